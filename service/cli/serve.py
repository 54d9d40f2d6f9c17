"""``ddp serve``: the HTTP service (settings also from ``DDP_*`` environment variables)."""

from __future__ import annotations

import argparse

from service.server import serve


def run_serve(args: argparse.Namespace) -> int:
    serve(
        host=args.host,
        port=args.port,
        weights=args.weights,
        untrained_config=args.untrained,
        device=args.device,
    )
    return 0
