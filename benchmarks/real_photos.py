"""Real photographs: the people a network finds at IoU >= 0.5 and its false detections.

``python -m benchmarks.real_photos --out docs/benchmarks`` runs the network on every
evaluation photo of ``model/data/photos.json`` (photos shipped inside installed packages, boxed
by hand; none is ever used in training: ``docs/real_photos.md``), scores each with
``model.evaluation.photos.score_photo`` and writes ``real_photos.md`` / ``.json`` and overlays.
Overlays are committed only for photos whose licence allows it (``may_commit``);
``--all-overlays DIR`` writes every one there for your own eyes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.common import configure_torch, describe, environment, markdown_table
from model.config import get_config
from model.data.photos import PhotoEntry, load_manifest, missing_photos_message
from model.evaluation.photos import evaluate_photos
from model.inference.predictor import Predictor
from model.outputs.visualize import draw_overlay, write_png
from model.paths import DEFAULT_WEIGHTS
from model.structures import DensePoseResult

OVERLAY_SIDE = 640
"""Longest side of the overlays written (the photos are up to 1280 px)."""


def _overlay(image: np.ndarray, result: DensePoseResult, path: Path) -> None:
    overlay = draw_overlay(image, result)
    scale = OVERLAY_SIDE / max(overlay.shape[:2])
    if scale < 1:
        size = (round(overlay.shape[1] * scale), round(overlay.shape[0] * scale))
        overlay = cv2.resize(overlay, size, interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, overlay)


def markdown(report: dict[str, Any]) -> str:
    totals = report["totals"]
    rows = [
        [
            r["id"], r["package"], str(r["detections"]), f"{r['found']}/{r['clearly_visible']}"
            if r["has_people"] else "–", str(r["false_detections"]), str(r["ignored_detections"]),
        ]
        for r in report["photos"]
    ]  # fmt: skip
    return "\n".join([
        "# Real photographs: people found, false detections",
        "",
        describe(report["environment"]),
        "",
        f"Network: {report['network']}; persons kept at score >= {report['score_threshold']}.",
        "Evaluation photos only (never trained or tuned on): `docs/real_photos.md`.",
        "",
        f"* **Clearly visible persons found at IoU 0.5: {totals['found']} of "
        f"{totals['clearly_visible_persons']} ({100 * totals['recall']:.0f} %)** on "
        f"{totals['photos_with_people']} photos with people",
        f"* **False detections per photo with people: "
        f"{totals['false_per_photo_with_people']:.1f}**",
        f"* **Detections per person-free photo: "
        f"{totals['detections_per_person_free_photo']:.1f}** "
        f"({totals['person_free_photos_with_any_detection']} of "
        f"{totals['photos_without_people']} photos with any)",
        "",
        markdown_table(
            ["photo", "package", "detections", "found / clearly visible", "false", "ignored"],
            rows,
        ),
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write real_photos.md/.json and overlays here")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--untrained", metavar="CONFIG", help="a random network (plumbing)")
    parser.add_argument("--score-threshold", type=float, help="default: the network's own")
    parser.add_argument("--all-overlays", type=Path, help="every overlay, not for committing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stem", default="real_photos", help="file names of the report")
    args = parser.parse_args(argv)
    configure_torch(args.threads)
    photos = load_manifest().photos
    missing = missing_photos_message(photos)
    if missing is not None:
        raise SystemExit(f"error: {missing}")
    overlays = args.out / args.stem if args.out else None

    def draw(entry: PhotoEntry, image: np.ndarray, result: DensePoseResult) -> None:
        if overlays is not None and entry.may_commit:
            _overlay(image, result, overlays / f"{entry.id}.png")
        if args.all_overlays is not None:
            _overlay(image, result, args.all_overlays / f"{entry.id}.png")

    if args.untrained:
        predictor = Predictor.untrained(get_config(args.untrained), device="cpu")
    else:
        predictor = Predictor.from_checkpoint(args.weights, device="cpu")
    threshold = (
        args.score_threshold
        if args.score_threshold is not None
        else predictor.config.instance.detection_score_threshold
    )
    report = {
        "environment": environment(
            module="benchmarks.real_photos", argv=list(argv or sys.argv[1:]), threads=args.threads
        ),
        "network": f"untrained {args.untrained}" if args.untrained else str(args.weights),
        "score_threshold": threshold,
        **evaluate_photos(predictor, photos, score_threshold=args.score_threshold, on_photo=draw),
    }
    report["environment"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.stem}.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / f"{args.stem}.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
