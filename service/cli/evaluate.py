"""``ddp eval``: GPS AP/AR and mask AP of a network on a DensePose-COCO directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.evaluation.evaluator import format_summary
from model.evaluation.report import evaluate_directory
from service.cli.network import load_predictor, network_name


def run_eval(args: argparse.Namespace) -> int:
    try:
        report = evaluate_directory(
            load_predictor(args), args.data, kappa=args.kappa, limit=args.limit
        )
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    report["network"] = network_name(args)
    print(format_summary(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0
