"""Running the app under uvicorn (what ``ddp serve`` calls)."""

from __future__ import annotations

from typing import Any

import uvicorn

from service.app import create_app
from service.loading import check_weights
from service.settings import Settings


def serve(*, host: str, port: int, log_level: str = "info", **overrides: Any) -> None:
    """Serve until SIGINT/SIGTERM; settings from ``DDP_*`` with ``overrides`` on top.

    On shutdown uvicorn stops accepting connections, lets in-flight requests finish (up to
    ``drain_timeout_s``), then the lifespan drains the batcher's queue.
    """
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    try:
        check_weights(settings)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=max(1, round(settings.drain_timeout_s)),
    )
