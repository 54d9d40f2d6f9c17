"""The network a command runs: shipped or named weights, or (loudly) a random one."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from model.config import CONFIGS, get_config
from model.device import select_device
from model.inference.predictor import Predictor

USAGE_ERROR = 2
"""Exit status of a command given something it cannot use (argparse's own, for bad options)."""


def resolve_device(name: str) -> torch.device:
    """``--device`` as a torch device; one that is not there (``cuda`` without CUDA, say) ends
    the command with a one-line error and ``USAGE_ERROR``, before anything is loaded."""
    try:
        return select_device(name)
    except ValueError as error:
        print(f"ddp: error: --device: {error}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None


def load_predictor(args: argparse.Namespace) -> Predictor:
    """The predictor of ``--weights`` / ``--untrained`` on ``--device`` at ``--precision``,
    its network run by ``--runtime`` (an export made on first use, then cached)."""
    predictor = _eager_predictor(args)
    if args.runtime == "torch":
        return predictor
    from model.runtimes.selection import load_runtime

    try:
        runtime = load_runtime(args.runtime, predictor)
    except ImportError as error:
        raise SystemExit(
            f"error: --runtime {args.runtime} needs the export extra "
            f"(pip install -e '.[export]'): {error}"
        ) from None
    except ValueError as error:  # e.g. openvino on CUDA
        raise SystemExit(f"error: --runtime {args.runtime}: {error}") from None
    return dataclasses.replace(predictor, runtime=runtime)


def _eager_predictor(args: argparse.Namespace) -> Predictor:
    device = str(resolve_device(args.device))
    if args.untrained:
        print(
            f"WARNING: randomly initialised {args.untrained!r} network: output is meaningless "
            "(plumbing check only).",
            file=sys.stderr,
        )
        return Predictor.untrained(get_config(args.untrained), device=device)
    weights = Path(args.weights)
    if not weights.is_file():
        raise SystemExit(
            f"error: no weights at {weights}. Pass --weights PATH, or --untrained CONFIG "
            f"({', '.join(CONFIGS)}) to check the pipeline with a random network."
        )
    return Predictor.from_checkpoint(weights, device=device, precision=args.precision)


def network_name(args: argparse.Namespace) -> str:
    """How reports name the network: ``untrained <config>`` or the weights' path."""
    return f"untrained {args.untrained}" if args.untrained else str(args.weights)
