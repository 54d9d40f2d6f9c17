"""Scoring detections on hand-boxed real photographs: people found at IoU >= 0.5, false ones.

Rules (as COCO's crowd regions): each detection, best score first, takes the unmatched person
box it overlaps most at IoU >= ``iou_threshold``. A detection matched to a person who is not
clearly visible (small, mostly out of view), or lying mostly (>= ``ignore_overlap`` of its
area) inside an ignore region, counts neither as found nor as false; such persons are never
counted missing. Every other unmatched detection is a false detection.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

from model.data.photos import PhotoEntry, load_photo
from model.inference.predictor import Predictor
from model.structures import DensePoseResult


@dataclass(frozen=True)
class PhotoScore:
    """Detections on one photo against its person boxes."""

    clearly_visible: int
    """Persons that count (at least 100 px tall, at least half in view)."""
    found: int
    """Of those, matched by a detection at IoU >= the threshold."""
    false_detections: int
    ignored_detections: int
    """Matched to a not-clearly-visible person or inside an ignore region."""


def score_photo(
    boxes_xyxy: Tensor,
    scores: Tensor,
    person_boxes: Sequence[Sequence[float]],
    clearly_visible: Sequence[bool],
    ignore_regions: Sequence[Sequence[float]] = (),
    *,
    iou_threshold: float = 0.5,
    ignore_overlap: float = 0.5,
) -> PhotoScore:
    """``boxes_xyxy`` (N, 4) and ``scores`` (N,) of the detections kept; ``person_boxes`` (P, 4)
    with one ``clearly_visible`` flag each; ``ignore_regions`` (R, 4); all in image pixels."""
    if len(person_boxes) != len(clearly_visible):
        raise ValueError("one clearly_visible flag per person box")
    detections = boxes_xyxy.detach().cpu().double().reshape(-1, 4)
    persons = torch.tensor(list(person_boxes), dtype=torch.float64).reshape(-1, 4)
    visible = torch.tensor(list(clearly_visible), dtype=torch.bool)
    iou = box_iou(detections, persons) if len(persons) else detections.new_zeros(len(detections), 0)
    taken = torch.zeros(len(persons), dtype=torch.bool)
    found = false = ignored = 0
    for d in torch.argsort(scores.detach().cpu(), descending=True, stable=True).tolist():
        overlaps = iou[d].masked_fill(taken, -1.0)
        if len(persons) and float(overlaps.max()) >= iou_threshold:
            p = int(overlaps.argmax())
            taken[p] = True
            if bool(visible[p]):
                found += 1
            else:
                ignored += 1
        elif _inside_any(detections[d], ignore_regions, ignore_overlap):
            ignored += 1
        else:
            false += 1
    return PhotoScore(
        clearly_visible=int(visible.sum()),
        found=found,
        false_detections=false,
        ignored_detections=ignored,
    )


def _inside_any(box: Tensor, regions: Sequence[Sequence[float]], fraction: float) -> bool:
    """Whether at least ``fraction`` of ``box`` (4,) lies inside one of ``regions``."""
    x0, y0, x1, y1 = box.tolist()
    area = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    for rx0, ry0, rx1, ry1 in regions:
        inter = max(min(x1, rx1) - max(x0, rx0), 0.0) * max(min(y1, ry1) - max(y0, ry0), 0.0)
        if area > 0 and inter / area >= fraction:
            return True
    return False


def evaluate_photos(
    predictor: Predictor,
    photos: Sequence[PhotoEntry],
    *,
    score_threshold: float | None = None,
    on_photo: Callable[[PhotoEntry, np.ndarray, DensePoseResult], None] | None = None,
) -> dict[str, Any]:
    """Every photo scored (``score_photo``; persons kept at ``score_threshold``, None: the
    network's own), with totals over the photos with people and the person-free ones.
    ``on_photo(entry, image_rgb, result)`` sees each photo's result (e.g. to draw overlays)."""
    rows: list[dict[str, Any]] = []
    for entry in photos:
        image = load_photo(entry)
        result = predictor([image])[0].best(score_threshold=score_threshold)
        score = score_photo(
            result.boxes_xyxy,
            result.scores,
            [p.box_xyxy for p in entry.persons],
            [p.clearly_visible for p in entry.persons],
            entry.ignore_regions,
        )
        rows.append({
            "id": entry.id,
            "package": entry.source.package,
            "has_people": entry.has_people,
            "detections": len(result),
            "clearly_visible": score.clearly_visible,
            "found": score.found,
            "false_detections": score.false_detections,
            "ignored_detections": score.ignored_detections,
            "scores": [round(float(s), 3) for s in result.scores],
        })  # fmt: skip
        if on_photo is not None:
            on_photo(entry, image, result)
        print(
            f"{entry.id}: {len(result)} detections, found {score.found}/"
            f"{score.clearly_visible}, false {score.false_detections}",
            file=sys.stderr,
        )
    with_people = [r for r in rows if r["has_people"]]
    without = [r for r in rows if not r["has_people"]]
    visible = sum(r["clearly_visible"] for r in with_people)
    found = sum(r["found"] for r in with_people)
    totals = {
        "photos_with_people": len(with_people),
        "photos_without_people": len(without),
        "clearly_visible_persons": visible,
        "found": found,
        "recall": found / max(visible, 1),
        "false_per_photo_with_people": sum(r["false_detections"] for r in with_people)
        / max(len(with_people), 1),
        "detections_per_person_free_photo": sum(r["detections"] for r in without)
        / max(len(without), 1),
        "person_free_photos_with_any_detection": sum(r["detections"] > 0 for r in without),
    }
    return {"photos": rows, "totals": totals}
