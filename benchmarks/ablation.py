"""Table 2 of ``docs/results.md``: the paper's ablation, re-run on the synthetic data.

``python -m benchmarks.ablation --steps 400 --out docs/benchmarks [--seeds 0 1]``

Each variant of ``model.config.ABLATIONS`` (full; w/o L_s; w/o L_s and IAN; w/o L_s, IAN and
sparse) is trained by ``ddp recipe`` on the same cached train set with the same schedule into
``--runs/<variant>-seed<k>`` (resumable), then scored on the same held-out set: GPS AP/AR,
mask AP and seconds per image (one image per forward pass). ``--seeds`` trains the full model
once per seed, so the table shows the seed-to-seed spread next to the variants' differences.
Unless given, every training and data setting is the recipe's own default
(``model.training.settings``), except the shorter schedule (``--steps``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from matplotlib.figure import Figure

from benchmarks.common import configure_torch, describe, environment, markdown_table, write_outputs
from model.config import ABLATIONS, ablate, get_config
from model.device import select_device
from model.training.recipe import run_recipe
from model.training.settings import DataEngine, DataSettings, TrainSettings

MODULE = "benchmarks.ablation"
METRICS = (("gps_ap", "AP"), ("gps_ap50", "AP50"), ("gps_ar", "AR"), ("mask_ap", "mask AP"))


def runs(seeds: Sequence[int]) -> list[tuple[str, int]]:
    """(variant, seed) pairs: every variant with the first seed, the full model with each."""
    return [(variant, seeds[0]) for variant in ABLATIONS] + [("full", s) for s in seeds[1:]]


def markdown(report: dict[str, Any]) -> str:
    headers = ["variant", "seed", *(name for _, name in METRICS), "s / image"]
    rows = [
        [
            row["variant"],
            str(row["seed"]),
            *("-" if row[key] is None else f"{row[key]:.1f}" for key, _ in METRICS),
            f"{row['seconds_per_image']:.3f}",
        ]
        for row in report["rows"]
    ]
    settings = report["settings"]
    return (
        f"{markdown_table(headers, rows)}\n"
        f"Config `{settings['config']}`, {settings['steps']} steps of batch "
        f"{settings['batch_size']}, {settings['train_images']} training images, "
        f"{settings['val_images']} held-out images.\n{describe(report['environment'])}\n"
    )


def plot(report: dict[str, Any], path: Path) -> None:
    figure = Figure(figsize=(6, 3.2))
    axis = figure.subplots()
    labels = [f"{row['variant']}\nseed {row['seed']}" for row in report["rows"]]
    axis.bar(labels, [row["gps_ap"] or 0.0 for row in report["rows"]], color="tab:blue")
    axis.set_ylabel("GPS AP (held-out)")
    axis.tick_params(axis="x", labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    train, data = TrainSettings(), DataSettings()
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--config", default="default")
    parser.add_argument("--steps", type=int, default=400, help="schedule of every run")
    parser.add_argument("--batch-size", type=int, default=train.batch_size)
    parser.add_argument("--lr", type=float, default=train.lr)
    parser.add_argument("--warmup", type=int, default=train.warmup_steps)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train-images", type=int, default=data.train_images)
    parser.add_argument("--val-images", type=int, default=data.val_images)
    parser.add_argument("--engine", default=data.engine, choices=get_args(DataEngine))
    parser.add_argument("--calibration-images", type=int, default=data.calibration_images)
    parser.add_argument("--data-root", help="rendered sets cache (default .cache/datasets)")
    parser.add_argument("--runs", default="runs/ablation", help="one run directory per row")
    parser.add_argument("--workers", type=int, default=train.workers)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--out", default="docs/benchmarks")
    args = parser.parse_args(argv)
    configure_torch(args.threads)
    env = environment(
        module=MODULE, argv=sys.argv[1:] if argv is None else argv, threads=args.threads
    )
    data = dataclasses.replace(
        data,
        train_images=args.train_images,
        val_images=args.val_images,
        calibration_images=args.calibration_images,
        engine=args.engine,
        workers=args.workers,
        data_root=Path(args.data_root) if args.data_root else None,
    )
    rows = []
    for variant, seed in runs(args.seeds):
        training = dataclasses.replace(
            train,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=args.warmup,
            workers=args.workers,
            seed=seed,
        )
        held_out = run_recipe(
            ablate(get_config(args.config), variant),
            Path(args.runs) / f"{variant}-seed{seed}",
            data,
            training,
            export=None,
            device=select_device("cpu"),
        )
        rows.append({"variant": variant, "seed": seed, **held_out})
    settings = {
        "config": args.config,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_steps": args.warmup,
        "checkpoint_every": train.checkpoint_every,
        "train_images": args.train_images,
        "val_images": args.val_images,
    }
    report = {"environment": env, "settings": settings, "rows": rows}
    write_outputs(Path(args.out), "ablation", report, markdown=markdown, plot=plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
