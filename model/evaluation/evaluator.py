"""Score ``DensePoseResult`` predictions against a DensePose-COCO set: GPS AP/AR, mask AP.

Images are added one at a time (only their similarity matrices are kept, so a whole set fits
in memory); ``summary`` matches and accumulates. Ground truth, per image:

* GPS: people with ``dp_*`` points count; the others (``iscrowd``, or never annotated with
  points as most of DensePose-COCO's people) are ignored, and a detection on one (box IoU
  ≥ 0.8, crowd-style IoU for ``iscrowd`` ones) is neither a true nor a false positive, as in
  DensePose's evaluator. Detection areas are box areas (as ``loadRes`` gives DensePose's).
* masks: every person with its ``segmentation``, ``iscrowd`` ones as crowd regions, scored
  with pycocotools' mask IoU (COCO's ``segm``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pycocotools.mask as mask_util

from model.data.coco import decode_segmentation
from model.data.loader import DensePoseCocoDataset
from model.evaluation.geodesic import SurfaceGeodesics
from model.evaluation.gps import annotated_person, gps_matrix
from model.evaluation.matching import (
    GPS_PROTOCOL,
    SEGM_PROTOCOL,
    ImageSimilarity,
    average_precision,
)
from model.structures import DensePoseResult

IGNORE_BOX_IOU = 0.8
"""Box IoU with an ignored person above which a detection is ignored (DensePose's)."""


def _rles(masks: np.ndarray) -> list[dict[str, Any]]:
    """(N, H, W) bool -> N COCO RLEs."""
    if not len(masks):
        return []
    return list(mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))))


def _iou(detections: list[Any], truths: list[Any], crowd: list[int]) -> np.ndarray:
    """(D, G) pycocotools IoU of boxes (xywh lists) or RLEs; intersection over the
    detection for crowd ground truth."""
    if not detections or not truths:
        return np.zeros((len(detections), len(truths)))
    return np.asarray(mask_util.iou(detections, truths, crowd)).reshape(len(detections), -1)


def _has_points(annotation: dict[str, Any]) -> bool:
    return not annotation.get("iscrowd", 0) and len(annotation.get("dp_x", ())) > 0


class DensePoseEvaluator:
    """GPS AP/AR (DensePose protocol) and mask AP (COCO ``segm``) of predictions.

    Args:
        dataset: the ground truth.
        geodesics: distances on the body mesh (``load_body_geodesics``).
        kappa: one GPS normaliser in metres for all points (0.255: the DensePose paper's);
            None: the per-part values of the current protocol.
    """

    def __init__(
        self,
        dataset: DensePoseCocoDataset,
        geodesics: SurfaceGeodesics,
        *,
        kappa: float | None = None,
    ) -> None:
        self.dataset = dataset
        self.geodesics = geodesics
        self.kappa = kappa
        self._gps: list[ImageSimilarity] = []
        self._masks: list[ImageSimilarity] = []

    def __len__(self) -> int:
        """Images added so far."""
        return len(self._gps)

    def add(self, index: int, result: DensePoseResult) -> None:
        """Score the prediction for image ``index`` of the dataset (each image once)."""
        image = self.dataset.images[index]
        height, width = image["height"], image["width"]
        if tuple(result.masks.shape[-2:]) != (height, width):
            raise ValueError(
                f"image {index} is {height}x{width}, the prediction's masks are "
                f"{tuple(result.masks.shape[-2:])}"
            )
        annotations = self.dataset.annotations(index)
        boxes = result.boxes_xyxy.double().numpy().reshape(-1, 4)
        boxes_xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        scores = result.scores.double().numpy()
        masks = result.masks.numpy()
        self._gps.append(self._gps_similarity(result, annotations, boxes_xywh, scores))
        truth_masks = np.zeros((len(annotations), height, width), dtype=bool)
        for mask, annotation in zip(truth_masks, annotations, strict=True):
            mask[:] = decode_segmentation(annotation["segmentation"], height, width)
        crowd = [int(a.get("iscrowd", 0)) for a in annotations]
        self._masks.append(
            ImageSimilarity(
                scores=scores,
                detection_areas=masks.sum(axis=(1, 2)).astype(np.float64),
                truth_areas=np.array([float(a["area"]) for a in annotations]),
                truth_ignored=np.array(crowd, dtype=bool),
                similarity=_iou(_rles(masks), _rles(truth_masks), crowd),
            )
        )

    def _gps_similarity(
        self,
        result: DensePoseResult,
        annotations: list[dict[str, Any]],
        boxes_xywh: np.ndarray,
        scores: np.ndarray,
    ) -> ImageSimilarity:
        scored = [a for a in annotations if _has_points(a)]
        ignored = [a for a in annotations if not _has_points(a)]
        people = [annotated_person(a, self.geodesics, kappa=self.kappa) for a in scored]
        on_ignored = _iou(
            boxes_xywh.tolist(),
            [a["bbox"] for a in ignored],
            [int(a.get("iscrowd", 0)) for a in ignored],
        )
        similarity = np.concatenate(
            [gps_matrix(result, people, self.geodesics), on_ignored >= IGNORE_BOX_IOU], axis=1
        )
        return ImageSimilarity(
            scores=scores,
            detection_areas=boxes_xywh[:, 2] * boxes_xywh[:, 3],
            truth_areas=np.array([float(a["area"]) for a in scored + ignored]),
            truth_ignored=np.arange(len(annotations)) >= len(scored),
            similarity=similarity.astype(np.float64),
        )

    def summary(self) -> dict[str, float]:
        """``gps_ap``, ``gps_ap50``, ``gps_ap75``, ``gps_apm``, ``gps_apl``, ``gps_ar``,
        ``gps_ar50``, ``gps_ar75``, ``gps_arm``, ``gps_arl``, ``mask_ap``, ``mask_ap50``,
        ``mask_ap75``: percent; NaN where the added images hold no ground truth to count."""
        gps = average_precision(self._gps, GPS_PROTOCOL)
        masks = average_precision(self._masks, SEGM_PROTOCOL)
        return {
            **{f"gps_{name}": value for name, value in gps.items()},
            **{f"mask_{name}": masks[name] for name in ("ap", "ap50", "ap75")},
        }


def evaluate(
    predictions: Sequence[DensePoseResult],
    ground_truth: DensePoseCocoDataset,
    *,
    geodesics: SurfaceGeodesics,
    kappa: float | None = None,
) -> dict[str, float]:
    """``DensePoseEvaluator.summary`` of predictions for the first ``len(predictions)``
    images of the ground truth."""
    if len(predictions) > len(ground_truth):
        raise ValueError(f"{len(predictions)} predictions for {len(ground_truth)} images")
    evaluator = DensePoseEvaluator(ground_truth, geodesics, kappa=kappa)
    for index, result in enumerate(predictions):
        evaluator.add(index, result)
    return evaluator.summary()


def format_summary(metrics: Mapping[str, Any]) -> str:
    """The metrics as a small text table (rows GPS and mask, columns AP, AP50, ...)."""
    columns = ("ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl")
    lines = ["      " + "".join(f"{c.upper():>7}" for c in columns)]
    for row in ("gps", "mask"):
        cells = [metrics.get(f"{row}_{c}") for c in columns]
        lines.append(f"{row:<6}" + "".join("      -" if v is None else f"{v:7.1f}" for v in cells))
    return "\n".join(lines)
