"""The network a command runs: shipped or named weights, or (loudly) a random one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.config import CONFIGS, get_config
from model.inference.predictor import Predictor


def load_predictor(args: argparse.Namespace) -> Predictor:
    """The predictor of ``--weights`` / ``--untrained`` on ``--device`` at ``--precision``."""
    if args.untrained:
        print(
            f"WARNING: randomly initialised {args.untrained!r} network: output is meaningless "
            "(plumbing check only).",
            file=sys.stderr,
        )
        return Predictor.untrained(get_config(args.untrained), device=args.device)
    weights = Path(args.weights)
    if not weights.is_file():
        raise SystemExit(
            f"error: no weights at {weights}. Pass --weights PATH, or --untrained CONFIG "
            f"({', '.join(CONFIGS)}) to check the pipeline with a random network."
        )
    return Predictor.from_checkpoint(weights, device=args.device, precision=args.precision)


def network_name(args: argparse.Namespace) -> str:
    """How reports name the network: ``untrained <config>`` or the weights' path."""
    return f"untrained {args.untrained}" if args.untrained else str(args.weights)
