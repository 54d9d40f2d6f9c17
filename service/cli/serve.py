"""``ddp serve``: the HTTP service (settings also from ``DDP_*`` environment variables)."""

from __future__ import annotations

import argparse

from service.cli.network import resolve_device
from service.server import serve


def run_serve(args: argparse.Namespace) -> int:
    if args.device is not None:
        resolve_device(args.device)  # a device that is not there: exit 2 before serving
    serve(
        host=args.host,
        port=args.port,
        weights=args.weights,
        untrained_config=args.untrained,
        device=args.device,
        runtime=args.runtime,
    )
    return 0
