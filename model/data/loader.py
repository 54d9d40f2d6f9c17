"""Read DensePose-COCO files (real ones, and ``ddp synth`` output) into ``DensePoseTargets``.

The same reader serves both: images by ``file_name`` under an image root, people from
``annotations`` (``iscrowd`` ones skipped), dense-pose points from ``dp_*`` where present.
``ddp synth`` output adds, per image, ``dense_file`` (``.npz`` with the full label maps; see
``model.data.dense``) which ``dense_labels`` reads.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from model.data.coco import MASK_SIZE, decode_segmentation
from model.data.dense import read_dense
from model.structures import DensePoseTargets


def _dp_mask(annotation: dict[str, Any], height: int, width: int) -> np.ndarray:
    """(H, W) bool: the union of the 14 ``dp_masks`` parts, resampled from the box frame."""
    grid = np.zeros((MASK_SIZE, MASK_SIZE), dtype=bool)
    for rle in annotation["dp_masks"]:
        if rle:
            grid |= decode_segmentation(rle, MASK_SIZE, MASK_SIZE)
    x, y, w, h = annotation["bbox"]
    out = np.zeros((height, width), dtype=bool)
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    x1, y1 = min(int(np.ceil(x + w)), width), min(int(np.ceil(y + h)), height)
    if x1 <= x0 or y1 <= y0:
        return out
    cols = np.clip(np.floor((np.arange(x0, x1) + 0.5 - x) / w * MASK_SIZE), 0, MASK_SIZE - 1)
    rows = np.clip(np.floor((np.arange(y0, y1) + 0.5 - y) / h * MASK_SIZE), 0, MASK_SIZE - 1)
    out[y0:y1, x0:x1] = grid[np.ix_(rows.astype(np.int64), cols.astype(np.int64))]
    return out


def annotation_points(annotation: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``dp_*`` points of one annotation in image pixels.

    Returns:
        xy: (P, 2) float64, ``x = bbox_x + dp_x · bbox_w / 256`` (likewise y);
        parts: (P,) int64 chart I; uv: (P, 2) float64 U, V.
    """
    x, y, w, h = (float(v) for v in annotation["bbox"])
    count = len(annotation["dp_x"])
    xy = np.stack(
        [
            x + np.asarray(annotation["dp_x"], dtype=np.float64) * w / MASK_SIZE,
            y + np.asarray(annotation["dp_y"], dtype=np.float64) * h / MASK_SIZE,
        ],
        axis=1,
    ).reshape(count, 2)
    parts = np.asarray(annotation["dp_I"], dtype=np.int64).reshape(count)
    uv = np.stack([annotation["dp_U"], annotation["dp_V"]], axis=1).reshape(count, 2)
    return xy, parts, uv.astype(np.float64)


def targets_from_annotations(
    annotations: list[dict[str, Any]], height: int, width: int
) -> DensePoseTargets:
    """Training targets of one image from its DensePose-COCO annotations.

    ``iscrowd`` people are left out; a person without ``dp_*`` fields has ``has_dp`` False
    and its instance mask as ``dp_masks``. Points: ``x = bbox_x + dp_x · bbox_w / 256``.
    """
    people = [a for a in annotations if not a.get("iscrowd", 0)]
    if not people:
        return DensePoseTargets.empty(height, width)
    boxes, masks, dp_masks, has_dp = [], [], [], []
    point_instance, point_xy, point_part, point_uv = [], [], [], []
    for index, annotation in enumerate(people):
        x, y, w, h = (float(v) for v in annotation["bbox"])
        boxes.append([x, y, x + w, y + h])
        mask = decode_segmentation(annotation["segmentation"], height, width)
        masks.append(mask)
        dense = "dp_x" in annotation and "dp_masks" in annotation
        has_dp.append(dense)
        dp_masks.append(_dp_mask(annotation, height, width) if dense else mask)
        if dense:
            xy, part, uv = annotation_points(annotation)
            point_instance.append(np.full(len(part), index))
            point_xy.append(xy)
            point_part.append(part)
            point_uv.append(uv)
    return DensePoseTargets(
        boxes_xyxy=torch.tensor(boxes, dtype=torch.float32),
        masks=torch.from_numpy(np.stack(masks)),
        dp_masks=torch.from_numpy(np.stack(dp_masks)),
        has_dp=torch.tensor(has_dp, dtype=torch.bool),
        point_instance=torch.from_numpy(np.concatenate([np.zeros(0, np.int64), *point_instance])),
        point_xy=torch.from_numpy(np.concatenate([np.zeros((0, 2)), *point_xy])).float(),
        point_part=torch.from_numpy(np.concatenate([np.zeros(0, np.int64), *point_part])),
        point_uv=torch.from_numpy(np.concatenate([np.zeros((0, 2)), *point_uv])).float(),
    )


class DensePoseCocoDataset:
    """Images and targets of a DensePose-COCO annotation file.

    Args:
        annotation_file: the JSON.
        image_root: where ``file_name`` paths start; default: the JSON's directory.
    """

    def __init__(self, annotation_file: str | Path, image_root: str | Path | None = None) -> None:
        path = Path(annotation_file)
        data = json.loads(path.read_text())
        self.root = Path(image_root) if image_root is not None else path.parent
        self.images: list[dict[str, Any]] = sorted(data["images"], key=lambda im: im["id"])
        self._annotations: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for annotation in data["annotations"]:
            self._annotations[annotation["image_id"]].append(annotation)

    def __len__(self) -> int:
        return len(self.images)

    def annotations(self, index: int) -> list[dict[str, Any]]:
        return self._annotations[self.images[index]["id"]]

    def targets(self, index: int) -> DensePoseTargets:
        image = self.images[index]
        return targets_from_annotations(self.annotations(index), image["height"], image["width"])

    def image_rgb(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8."""
        path = self.root / self.images[index]["file_name"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"{path}: missing or not an image")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def __getitem__(self, index: int) -> tuple[np.ndarray, DensePoseTargets]:
        return self.image_rgb(index), self.targets(index)

    def dense_labels(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(parts (H, W) uint8, uv (H, W, 2) float32, instance (H, W) uint8) or None.

        ``instance`` values are the annotations' ``dense_id`` (0 = background).
        """
        name = self.images[index].get("dense_file")
        if name is None:
            return None
        return read_dense(self.root / name)
