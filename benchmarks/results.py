"""Table 1 and Fig. 6 of ``docs/results.md``: the shipped network on the held-out synthetic set.

``python -m benchmarks.results --data DIR --out docs/results`` (``DIR``: a held-out set, e.g.
the one ``ddp recipe`` renders under ``.cache/datasets/``; ``--weights`` defaults to the shipped
network, ``model.paths.DEFAULT_WEIGHTS``)

* ``table1.json`` / ``table1.md``: GPS AP, AP50, AP75, AP_M, AP_L, AR, AR50, AR75 (per-part
  κ, ``model.evaluation``), instance-mask AP, and seconds per image (one image per forward
  pass, ``--threads`` intra-op threads, decoding excluded) on the whole held-out set.
* ``fig6.jpg``: the first ``--figure-images`` held-out images, one row each: the input, the
  ground truth and the prediction, drawn alike (part colours + U/V isocontours).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.common import configure_torch, describe, environment, markdown_table, write_outputs
from model.data.loader import DensePoseCocoDataset
from model.evaluation.report import annotations_file, evaluate_directory
from model.inference.predictor import Predictor
from model.outputs.visualize import draw_dense_overlay, draw_overlay
from model.paths import DEFAULT_WEIGHTS

MODULE = "benchmarks.results"
COLUMNS = (
    ("gps_ap", "AP"), ("gps_ap50", "AP50"), ("gps_ap75", "AP75"), ("gps_apm", "AP_M"),
    ("gps_apl", "AP_L"), ("gps_ar", "AR"), ("gps_ar50", "AR50"), ("gps_ar75", "AR75"),
    ("mask_ap", "mask AP"),
)  # fmt: skip


def table1_markdown(report: dict[str, Any]) -> str:
    metrics = report["metrics"]
    cells = ["-" if metrics[key] is None else f"{metrics[key]:.1f}" for key, _ in COLUMNS]
    headers = ["network", *(name for _, name in COLUMNS), "s / image"]
    row = [report["network"], *cells, f"{metrics['seconds_per_image']:.3f}"]
    return (
        f"{markdown_table(headers, [row])}\n"
        f"{metrics['images']} held-out images of `{metrics['data']}`, GPS with per-part κ.\n"
        f"{describe(report['environment'])}\n"
    )


def figure_rows(predictor: Predictor, dataset: DensePoseCocoDataset, count: int) -> np.ndarray:
    """(count · H, 3 · W, 3) uint8: per image, input | ground truth | prediction."""
    rows = []
    for index in range(min(count, len(dataset))):
        image = dataset.image_rgb(index)
        labels = dataset.dense_labels(index)
        if labels is None:
            raise ValueError(f"image {index} has no dense labels (not a `ddp synth` set)")
        parts, uv, instance = labels
        truth = draw_dense_overlay(image, instance, parts, uv.transpose(2, 0, 1))
        prediction = draw_overlay(image, predictor([image])[0])
        rows.append(np.concatenate([image, truth, prediction], axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="checkpoint")
    parser.add_argument("--data", required=True, help="held-out set (ddp synth output)")
    parser.add_argument("--out", default="docs/results", help="output directory")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--limit", type=int, help="score the first N images only")
    parser.add_argument("--figure-images", type=int, default=4, help="rows of fig6.jpg")
    args = parser.parse_args(argv)
    configure_torch(args.threads)
    out = Path(args.out)
    env = environment(
        module=MODULE, argv=sys.argv[1:] if argv is None else argv, threads=args.threads
    )
    predictor = Predictor.from_checkpoint(args.weights, device="cpu")
    report = {
        "environment": env,
        "network": f"{predictor.config.name} ({Path(args.weights).name})",
        "metrics": evaluate_directory(predictor, args.data, limit=args.limit),
    }
    dataset = DensePoseCocoDataset(annotations_file(args.data))
    figure = figure_rows(predictor, dataset, args.figure_images)

    def write_figure(_: dict[str, Any], path: Path) -> None:
        ok, jpeg = cv2.imencode(
            ".jpg", cv2.cvtColor(figure, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88]
        )
        if not ok:
            raise ValueError("JPEG encoding of the figure failed")
        path.with_name("fig6.jpg").write_bytes(jpeg.tobytes())

    write_outputs(out, "table1", report, markdown=table1_markdown, plot=write_figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
