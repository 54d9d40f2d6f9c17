"""Score a network on a DensePose-COCO directory: the report ``ddp eval`` and training print."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from model.data.loader import DensePoseCocoDataset
from model.evaluation.evaluator import DensePoseEvaluator
from model.evaluation.geodesic import load_body_geodesics
from model.inference.predictor import Predictor


def annotations_file(data_dir: str | Path) -> Path:
    """``data_dir/annotations.json``; FileNotFoundError saying how to make one if missing."""
    path = Path(data_dir) / "annotations.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path} (write a set with `ddp synth --out DIR`)")
    return path


def evaluate_directory(
    predictor: Predictor,
    data_dir: str | Path,
    *,
    kappa: float | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """GPS AP/AR and mask AP (percent, None where undefined) of ``predictor`` on the first
    ``limit`` images (all if None) of ``data_dir``, one image per forward pass, with the
    images scored, the wall time and the seconds per image (decoding excluded)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    dataset = DensePoseCocoDataset(annotations_file(data_dir))
    evaluator = DensePoseEvaluator(dataset, load_body_geodesics(), kappa=kappa)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    network_seconds = 0.0
    indices = tqdm(range(count), desc="eval", unit="image", file=sys.stderr, disable=not progress)
    for index in indices:
        image = dataset.image_rgb(index)
        start = time.perf_counter()
        result = predictor([image])[0]
        network_seconds += time.perf_counter() - start
        evaluator.add(index, result)
    metrics = evaluator.summary()
    return {
        "data": str(data_dir),
        "images": count,
        "kappa": "per part" if kappa is None else kappa,
        "seconds_per_image": round(network_seconds / max(count, 1), 4),
        **{k: None if math.isnan(v) else round(v, 3) for k, v in metrics.items()},
    }
