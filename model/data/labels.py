"""Per-person views of dense label maps (masks, boxes) and their ``DensePoseResult`` form."""

from __future__ import annotations

import numpy as np
import torch

from model.structures import DensePoseResult, integer_boxes


def person_masks(instance: np.ndarray, count: int) -> np.ndarray:
    """(H, W) instance ids (0 = background, i + 1 = person i) -> (count, H, W) bool masks."""
    return instance[None] == np.arange(1, count + 1)[:, None, None]


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 tight ``x0, y0, x1, y1`` pixel boxes (0 if empty)."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(xs):
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def as_result(parts: np.ndarray, uv: np.ndarray, instance: np.ndarray) -> DensePoseResult:
    """Dense labels of an image as a ``DensePoseResult`` (score 1), e.g. for ``draw_overlay``.

    Args:
        parts: (H, W) uint8 chart I; uv: (H, W, 2) float U, V; instance: (H, W) person ids
            (0 = background, i + 1 = person i).
    """
    count = int(instance.max())
    masks = person_masks(instance, count)
    keep = masks.any(axis=(1, 2))
    masks = masks[keep]
    boxes = torch.from_numpy(mask_boxes(masks))
    crops = integer_boxes(boxes, *parts.shape).tolist()
    person_parts, person_uv = [], []
    for mask, (x0, y0, x1, y1) in zip(masks, crops, strict=True):
        inside = mask[y0:y1, x0:x1]
        person_parts.append(torch.from_numpy(np.where(inside, parts[y0:y1, x0:x1], 0)))
        crop_uv = np.where(inside[..., None], uv[y0:y1, x0:x1], 0).transpose(2, 0, 1)
        person_uv.append(torch.from_numpy(np.ascontiguousarray(crop_uv, dtype=np.float32)))
    return DensePoseResult(
        boxes_xyxy=boxes,
        scores=torch.ones(len(masks)),
        masks=torch.from_numpy(masks),
        parts=person_parts,
        uv=person_uv,
    )
