"""Running the app under uvicorn (what ``ddp serve`` calls)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import uvicorn

from service.app import create_app
from service.connections import ConnectionLimits, guarded_protocol
from service.loading import check_weights
from service.settings import Settings


def serve(*, host: str, port: int, log_level: str = "info", **overrides: Any) -> None:
    """Serve until SIGINT/SIGTERM; settings from ``DDP_*`` with ``overrides`` on top.

    On shutdown uvicorn stops accepting connections, lets in-flight requests finish (up to
    ``drain_timeout_s``), then the lifespan drains the batcher's queue; after SIGTERM the
    process then exits with status 0. Connections get the limits of ``service.connections``
    (header and body timeouts, a connection cap, keep-alive).
    """
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    try:
        check_weights(settings)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    app = create_app(settings)
    previous = signal.signal(signal.SIGTERM, _drained)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            http=guarded_protocol(ConnectionLimits.of(settings)),
            timeout_graceful_shutdown=max(1, round(settings.drain_timeout_s)),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)


def _drained(signum: int, frame: FrameType | None) -> None:
    """SIGTERM after the drain: uvicorn handles the signal while it serves, then restores this
    handler and raises the signal again, which under the default handler would end a clean
    shutdown with status 143 (killed by SIGTERM)."""
