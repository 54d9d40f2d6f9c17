"""Detection settings chosen on a validation set: the score threshold and the mask NMS.

The network's scores are not probabilities, and duplicates survive box NMS; which threshold
and which duplicate rule serve users best is measured, on a validation set that is neither the
held-out set the recipe reports nor the real-photo evaluation set. The criterion is F1 of
person detection at IoU >= 0.5 (``model.evaluation.photos.score_photo``): a service returns
every person it keeps, so false detections cost as much as missed people.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from model.config import DDPConfig, MaskNMSName
from model.data.loader import DensePoseCocoDataset
from model.evaluation.photos import score_photo
from model.evaluation.report import annotations_file
from model.inference.predictor import Predictor

THRESHOLDS = tuple(round(0.30 + 0.05 * i, 2) for i in range(11))
"""Score thresholds tried: 0.30, 0.35, ..., 0.80."""
MASK_NMS: tuple[tuple[MaskNMSName, float], ...] = (
    ("none", 0.5),
    ("hard", 0.5),
    ("hard", 0.7),
    ("matrix", 0.5),
)
"""(method, containment threshold) pairs tried (the threshold matters for ``hard`` only)."""


@dataclass(frozen=True)
class Candidate:
    """One setting and its counts over the validation images."""

    mask_nms: MaskNMSName
    mask_nms_threshold: float
    score_threshold: float
    found: int
    persons: int
    false_detections: int

    @property
    def f1(self) -> float:
        kept = self.found + self.false_detections
        precision = self.found / kept if kept else 1.0
        recall = self.found / self.persons if self.persons else 1.0
        total = precision + recall
        return 2 * precision * recall / total if total else 0.0


def choose_detection_settings(
    predictor: Predictor,
    data_dir: str | Path,
    *,
    limit: int | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
    mask_nms: Sequence[tuple[MaskNMSName, float]] = MASK_NMS,
) -> tuple[DDPConfig, list[Candidate]]:
    """The predictor's config with the best (F1) ``mask_nms``, ``mask_nms_threshold`` and
    ``detection_score_threshold`` on ``data_dir``, and every candidate's counts (best first).

    One forward pass per image and mask-NMS setting, at the lowest threshold tried; higher
    thresholds filter those detections (equal to running with them: the threshold is the last
    step of detection selection).
    """
    dataset = DensePoseCocoDataset(annotations_file(data_dir))
    count = len(dataset) if limit is None else min(limit, len(dataset))
    original = predictor.model.detection
    candidates: list[Candidate] = []
    try:
        for method, containment in mask_nms:
            predictor.model.detection = dataclasses.replace(
                original,
                mask_nms=method,
                mask_nms_threshold=containment,
                detection_score_threshold=min(thresholds),
            )
            counts = {t: [0, 0, 0] for t in thresholds}
            for index in tqdm(
                range(count), desc=f"calibrate {method} {containment}", file=sys.stderr
            ):
                result = predictor([dataset.image_rgb(index)])[0]
                persons, crowds = _person_boxes(dataset.annotations(index))
                for threshold in thresholds:
                    kept = torch.nonzero(result.scores >= threshold).flatten()
                    score = score_photo(
                        result.boxes_xyxy[kept],
                        result.scores[kept],
                        persons,
                        [True] * len(persons),
                        crowds,
                    )
                    tally = counts[threshold]
                    tally[0] += score.found
                    tally[1] += score.clearly_visible
                    tally[2] += score.false_detections
            candidates += [
                Candidate(method, containment, threshold, *tally)
                for threshold, tally in counts.items()
            ]
    finally:
        predictor.model.detection = original
    candidates.sort(key=lambda c: (-c.f1, c.score_threshold))
    best = candidates[0]
    instance = dataclasses.replace(
        predictor.config.instance,
        mask_nms=best.mask_nms,
        mask_nms_threshold=best.mask_nms_threshold,
        detection_score_threshold=best.score_threshold,
    )
    return predictor.config.replace(instance=instance), candidates


def _person_boxes(
    annotations: list[dict[str, Any]],
) -> tuple[list[list[float]], list[list[float]]]:
    """COCO ``bbox`` (x, y, w, h) -> xyxy boxes of counted persons and of ``iscrowd`` ones."""
    persons: list[list[float]] = []
    crowds: list[list[float]] = []
    for annotation in annotations:
        x, y, w, h = annotation["bbox"]
        (crowds if annotation.get("iscrowd") else persons).append([x, y, x + w, y + h])
    return persons, crowds


def candidates_table(candidates: Sequence[Candidate], *, top: int = 8) -> str:
    """The best ``top`` candidates as a markdown table."""
    lines = [
        "| mask NMS | containment | score threshold | found / persons | false | F1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in candidates[:top]:
        lines.append(
            f"| {c.mask_nms} | {c.mask_nms_threshold:g} | {c.score_threshold:.2f} | "
            f"{c.found}/{c.persons} | {c.false_detections} | {c.f1:.3f} |"
        )
    return "\n".join(lines) + "\n"
