"""Which training recipe generalises to real photographs: variants side by side.

``python -m benchmarks.recipes --steps 250 --variants finetune frozen4 --out docs/benchmarks``

Every variant is ``ddp recipe`` (``model.training.recipe.run_recipe``) on the same cached
training set, with the same schedule and seed, into ``--runs/<variant>`` (resumable); each is
scored on the synthetic held-out set (GPS AP, mask AP) AND on the real-photo evaluation set
(people found at IoU 0.5, false detections; ``model/data/photos.json``), with the detection
threshold and mask NMS chosen on the validation set first (never on either scored set).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from benchmarks.common import configure_torch, describe, environment, markdown_table, write_outputs
from model.config import get_config
from model.device import select_device
from model.training.recipe import run_recipe
from model.training.settings import DataEngine, DataSettings, TrainSettings

MODULE = "benchmarks.recipes"
METRICS = ("gps_ap", "gps_ap50", "mask_ap")
VARIANTS: dict[str, tuple[int, DataEngine]] = {
    "finetune": (0, "world"),
    "frozen2": (2, "world"),
    "frozen2-plain": (2, "plain"),
    "frozen4": (4, "world"),
    "finetune-plain": (0, "plain"),
    "frozen4-plain": (4, "plain"),
}
"""Variant -> (pretrained body stages frozen, data engine)."""


def markdown(report: dict[str, Any]) -> str:
    headers = [
        "variant", "frozen stages", "engine", "GPS AP", "AP50", "mask AP",
        "real: found", "real: false / photo", "real: detections / empty photo",
        "threshold", "mask NMS",
    ]  # fmt: skip
    rows = []
    for row in report["rows"]:
        real = row["real_photos"]
        rows.append([
            row["variant"], str(row["frozen_stages"]), row["engine"],
            *("-" if row[k] is None else f"{row[k]:.1f}" for k in METRICS),
            f"{real['found']}/{real['clearly_visible_persons']}" if real else "-",
            f"{real['false_per_photo_with_people']:.1f}" if real else "-",
            f"{real['detections_per_person_free_photo']:.1f}" if real else "-",
            f"{row['score_threshold']:.2f}", row["mask_nms"],
        ])  # fmt: skip
    s = report["settings"]
    return (
        "# Recipes side by side: synthetic held-out set and real photographs\n\n"
        f"{markdown_table(headers, rows)}\n"
        f"Config `{s['config']}`, {s['steps']} steps of batch {s['batch_size']} from ImageNet, "
        f"{s['train_images']} training images, {s['val_images']} held-out images (plain "
        f"engine, seed 1), detection settings chosen on {s['calibration_images']} validation "
        f"images (seed 2); world-engine sets drawn on {s['background_photos']} "
        f"photos of the training pool. Real photos: `docs/real_photos.md`.\n\n"
        f"{describe(report['environment'])}\n"
    )


def plot(report: dict[str, Any], path: Path) -> None:
    figure = Figure(figsize=(7, 3.2))
    left, right = figure.subplots(1, 2)
    labels = [row["variant"] for row in report["rows"]]
    left.bar(labels, [row["gps_ap"] or 0.0 for row in report["rows"]], color="tab:blue")
    left.set_ylabel("GPS AP (synthetic held-out)")
    false = [
        (row["real_photos"] or {}).get("false_per_photo_with_people", 0.0)
        for row in report["rows"]
    ]
    right.bar(labels, false, color="tab:red")
    right.set_ylabel("false detections / real photo")
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    train, data = TrainSettings(), DataSettings()
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--config", default="default")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=250, help="schedule of every run")
    parser.add_argument("--train-images", type=int, default=data.train_images)
    parser.add_argument("--val-images", type=int, default=data.val_images)
    parser.add_argument("--calibration-images", type=int, default=data.calibration_images)
    parser.add_argument("--data-root", help="rendered sets cache (None: .cache/datasets)")
    parser.add_argument("--runs", default="runs/recipes", help="one run directory per variant")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--background-photos",
        type=int,
        default=data.background_photos,
        help="world engine: the first N photos of the training pool (default: the shipped "
        "recipe's)",
    )
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--stem", default="recipes", help="file names of the report")
    args = parser.parse_args(argv)
    configure_torch(args.threads)
    env = environment(
        module=MODULE, argv=sys.argv[1:] if argv is None else argv, threads=args.threads
    )
    training = dataclasses.replace(train, steps=args.steps)
    rows = []
    for variant in args.variants:
        frozen, engine = VARIANTS[variant]
        settings = dataclasses.replace(
            data,
            train_images=args.train_images,
            val_images=args.val_images,
            calibration_images=args.calibration_images,
            engine=engine,
            data_root=Path(args.data_root) if args.data_root else None,
            background_photos=args.background_photos,
        )
        config = get_config(args.config)
        config = config.replace(backbone=dataclasses.replace(config.backbone, frozen_stages=frozen))
        out_dir = Path(args.runs) / variant
        held_out = run_recipe(
            config, out_dir, settings, training, export=None, device=select_device("cpu")
        )
        real_file = out_dir / "real_photos.json"
        real = json.loads(real_file.read_text())["totals"] if real_file.is_file() else None
        final = json.loads((out_dir / "final.json").read_text())["instance"]
        rows.append({
            "variant": variant, "frozen_stages": frozen, "engine": engine, **held_out,
            "real_photos": real, "score_threshold": final["detection_score_threshold"],
            "mask_nms": final["mask_nms"],
        })  # fmt: skip
    report = {
        "environment": env,
        "settings": {
            "config": args.config,
            "steps": args.steps,
            "batch_size": training.batch_size,
            "lr": training.lr,
            "train_images": args.train_images,
            "val_images": args.val_images,
            "calibration_images": args.calibration_images,
            "background_photos": args.background_photos,
        },
        "rows": rows,
    }
    write_outputs(Path(args.out), args.stem, report, markdown=markdown, plot=plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
