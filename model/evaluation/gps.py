"""Geodesic point similarity (GPS) of predicted persons to annotated ones.

DensePose's definition (``densepose_coco_evaluation.py`` in detectron2, and the 2019
challenge's ``evaluation.md``): for the annotated points p_i of a person, read the predicted
(I, U, V) at the same pixels from the detection and take

    GPS = 1/|P| · Σ_i exp(−d(p̂_i, p_i)² / (2 κ(p_i)²))

with d the geodesic distance on the body mesh. A point outside the detection's box, or where
the detection says background (I = 0), has d = ∞ and adds 0; a point given the wrong chart
is simply far away on the mesh. κ(p_i) is the per-part normaliser of the 2019 protocol (the
mean geodesic distance between points on the point's coarse part, in metres on DensePose's
SMPL template); the 2018 protocol and the DensePose paper used one κ = 0.255 for all points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.config import NUM_PARTS
from model.data.loader import annotation_points
from model.evaluation.geodesic import SurfaceGeodesics
from model.structures import DensePoseResult

PAPER_KAPPA = 0.255
"""The single κ of the DensePose paper and the 2018 challenge (0.3 m ↦ GPS ≈ 0.5)."""

_PART_KAPPA = {
    (1, 2): 0.351,  # torso
    (3, 4): 0.107,  # hands
    (5, 6): 0.126,  # feet
    (7, 8, 9, 10): 0.237,  # upper legs
    (11, 12, 13, 14): 0.173,  # lower legs
    (15, 16, 17, 18): 0.142,  # upper arms
    (19, 20, 21, 22): 0.128,  # lower arms
    (23, 24): 0.150,  # head
}
PART_KAPPA = np.full(NUM_PARTS + 1, np.nan)
"""(25,) κ in metres by chart I of the annotated point (DensePose's ``Mean_Distances`` of
the point's coarse part; NaN for background)."""
for _charts, _kappa in _PART_KAPPA.items():
    PART_KAPPA[list(_charts)] = _kappa


@dataclass(frozen=True)
class AnnotatedPerson:
    """The annotated points of one person, ready to be compared with detections.

    Attributes:
        pixels: (P, 2) int64, column and row of each point's pixel in the image.
        samples: (P,) int64, the geodesic sample of each annotated surface point.
        kappa: (P,) float64, its GPS normaliser in metres.
    """

    pixels: np.ndarray
    samples: np.ndarray
    kappa: np.ndarray

    def __len__(self) -> int:
        return len(self.samples)


def annotated_person(
    annotation: dict[str, Any], geodesics: SurfaceGeodesics, *, kappa: float | None = None
) -> AnnotatedPerson:
    """The ``dp_*`` points of a DensePose-COCO annotation; ``kappa`` None = per part."""
    xy, parts, uv = annotation_points(annotation)
    if len(parts) and not 1 <= parts.min() <= parts.max() <= NUM_PARTS:
        raise ValueError(f"annotated dp_I must be in 1..{NUM_PARTS}, got {sorted(set(parts))}")
    return AnnotatedPerson(
        pixels=np.floor(xy).astype(np.int64),
        samples=geodesics.nearest_samples(parts, uv),
        kappa=PART_KAPPA[parts] if kappa is None else np.full(len(parts), kappa),
    )


def predicted_charts(
    result: DensePoseResult, person: int, box: Sequence[int], pixels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Chart I (P,) int64 and U, V (P, 2) float64 that detection ``person`` of ``result``
    gives the image pixels (P, 2) (column, row); I = 0 outside its crop ``box`` (its
    ``integer_boxes()`` row: x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    cols, rows = pixels[:, 0], pixels[:, 1]
    inside = (cols >= x0) & (cols < x1) & (rows >= y0) & (rows < y1)
    parts = np.zeros(len(pixels), dtype=np.int64)
    uv = np.zeros((len(pixels), 2))
    crop_parts, crop_uv = result.parts[person].numpy(), result.uv[person].numpy()
    r, c = rows[inside] - y0, cols[inside] - x0
    parts[inside] = crop_parts[r, c]
    uv[inside] = crop_uv[:, r, c].T
    return parts, uv


def gps_matrix(
    result: DensePoseResult, people: list[AnnotatedPerson], geodesics: SurfaceGeodesics
) -> np.ndarray:
    """(N, G) float64 GPS of each of the N detections of an image to each annotated person
    (0 for a person without points)."""
    out = np.zeros((len(result), len(people)))
    if not len(result) or not people:
        return out
    pixels = np.concatenate([p.pixels for p in people])
    samples = np.concatenate([p.samples for p in people])
    kappa = np.concatenate([p.kappa for p in people])
    owner = np.repeat(np.arange(len(people)), [len(p) for p in people])
    counts = np.bincount(owner, minlength=len(people))
    boxes = result.integer_boxes().tolist()
    for detection in range(len(result)):
        parts, uv = predicted_charts(result, detection, boxes[detection], pixels)
        distance = geodesics.between(samples, geodesics.nearest_samples(parts, uv))
        similarity = np.exp(-(distance**2) / (2 * kappa**2))
        total = np.bincount(owner, weights=similarity, minlength=len(people))
        out[detection] = np.divide(total, counts, out=np.zeros(len(people)), where=counts > 0)
    return out
