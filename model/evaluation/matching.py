"""COCO-style AP and AR from precomputed similarities, on pycocotools' own machinery.

pycocotools' ``COCOeval`` does the greedy matching (detections by decreasing score, each to
the most similar free ground truth above the threshold), ignore handling and the 101-point
precision/recall accumulation; only its similarity (IoU) step is replaced by a lookup in the
matrices given here, so GPS can take IoU's place as DensePose's evaluator does.

Ignored ground truth behaves as COCO's crowd regions: any number of detections may match it,
and those are neither true nor false positives.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

_MAX_AREA = 1e10


@dataclass(frozen=True)
class Protocol:
    """What to accumulate: similarity thresholds, detections kept per image, area ranges."""

    max_detections: tuple[int, ...]
    area_ranges: dict[str, tuple[float, float]]
    thresholds: np.ndarray = field(default_factory=lambda: np.linspace(0.5, 0.95, 10))


GPS_PROTOCOL = Protocol(
    max_detections=(20,),
    area_ranges={"all": (0, _MAX_AREA), "medium": (32**2, 96**2), "large": (96**2, _MAX_AREA)},
)
"""DensePose's: 20 detections per image; all, medium and large persons (no small ones)."""
SEGM_PROTOCOL = Protocol(
    max_detections=(1, 10, 100),
    area_ranges={
        "all": (0, _MAX_AREA),
        "small": (0, 32**2),
        "medium": (32**2, 96**2),
        "large": (96**2, _MAX_AREA),
    },
)
"""COCO's instance segmentation protocol."""


@dataclass(frozen=True)
class ImageSimilarity:
    """One image's detections and ground truth, and their similarities.

    Attributes:
        scores: (D,) float, detection confidences.
        detection_areas: (D,) float, pixels (decides area ranges of unmatched detections).
        truth_areas: (G,) float, pixels.
        truth_ignored: (G,) bool, ground truth acting as a crowd region.
        similarity: (D, G) float in [0, 1], e.g. IoU or GPS.
    """

    scores: np.ndarray
    detection_areas: np.ndarray
    truth_areas: np.ndarray
    truth_ignored: np.ndarray
    similarity: np.ndarray

    def __post_init__(self) -> None:
        count, truths = len(self.scores), len(self.truth_areas)
        shapes = (self.detection_areas.shape, self.truth_ignored.shape, self.similarity.shape)
        if shapes != ((count,), (truths,), (count, truths)):
            raise ValueError(
                f"need ({count},) detection_areas, ({truths},) truth_ignored and "
                f"({count}, {truths}) similarity, got {shapes}"
            )


def _coco(image_ids: list[int], annotations: list[dict[str, Any]]) -> COCO:
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i} for i in image_ids],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class _PrecomputedEval(COCOeval):  # type: ignore[misc]
    """``COCOeval`` reading similarities from ``ImageSimilarity.similarity``."""

    def __init__(self, images: list[ImageSimilarity], protocol: Protocol) -> None:
        truths: list[dict[str, Any]] = []
        detections: list[dict[str, Any]] = []
        for image_id, image in enumerate(images, start=1):
            for index, (area, ignored) in enumerate(
                zip(image.truth_areas, image.truth_ignored, strict=True)
            ):
                truths.append({"image_id": image_id, "area": float(area),
                               "iscrowd": int(ignored), "index": index})  # fmt: skip
            for index, (score, area) in enumerate(
                zip(image.scores, image.detection_areas, strict=True)
            ):
                detections.append({"image_id": image_id, "area": float(area),
                                   "score": float(score), "index": index})  # fmt: skip
        for number, record in enumerate(truths + detections, start=1):  # ids must be > 0
            record.update(id=number, category_id=1)
        ids = list(range(1, len(images) + 1))
        super().__init__(_coco(ids, truths), _coco(ids, detections), iouType="bbox")
        self._similarity = {i: image.similarity for i, image in zip(ids, images, strict=True)}
        self.params.iouThrs = protocol.thresholds
        self.params.maxDets = list(protocol.max_detections)
        self.params.areaRng = [list(r) for r in protocol.area_ranges.values()]
        self.params.areaRngLbl = list(protocol.area_ranges)

    def computeIoU(self, imgId: int, catId: int) -> np.ndarray | list[Any]:
        truths, detections = self._gts[imgId, catId], self._dts[imgId, catId]
        if not truths or not detections:
            return []
        order = np.argsort([-d["score"] for d in detections], kind="mergesort")
        rows = [detections[i]["index"] for i in order[: self.params.maxDets[-1]]]
        return self._similarity[imgId][np.ix_(rows, [t["index"] for t in truths])]


def average_precision(images: list[ImageSimilarity], protocol: Protocol) -> dict[str, float]:
    """AP and AR in percent over the images: ``ap`` (mean over thresholds), ``ap50``,
    ``ap75``, ``ap<area initial>`` per area range other than "all" (``apm``, ...), and the
    same for ``ar``; all at the largest ``max_detections``. NaN where no ground truth counts
    (pycocotools' -1)."""
    evaluation = _PrecomputedEval(images, protocol)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, 0, :, -1]  # [T, R, A]
    recall = evaluation.eval["recall"][:, 0, :, -1]  # [T, A]
    thresholds = protocol.thresholds

    def mean(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(100 * valid.mean()) if valid.size else float("nan")

    everything = list(protocol.area_ranges).index("all")
    out: dict[str, float] = {}
    for name, values in (("ap", precision), ("ar", recall)):
        out[name] = mean(values[..., everything])
        for percent in (50, 75):
            at = np.isclose(thresholds, percent / 100)
            out[f"{name}{percent}"] = mean(values[at, ..., everything])
        for area, label in enumerate(protocol.area_ranges):
            if label != "all":
                out[f"{name}{label[0]}"] = mean(values[..., area])
    return out
