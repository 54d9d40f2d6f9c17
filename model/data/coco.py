"""DensePose-COCO annotations from dense labels, and the schema's mask encodings.

Schema (checked against detectron2's ``densepose/structures/data_relative.py`` and
DensePose's ``data_format.md``): per person ``bbox`` [x, y, w, h], ``segmentation`` (RLE or
polygons), ``area``, ``iscrowd``, ``category_id`` 1; annotated people add ``dp_x``, ``dp_y``
(point positions in the box scaled to 256 × 256: ``x_img = x + dp_x · w / 256``), ``dp_I``
(1..24), ``dp_U``, ``dp_V`` (0..1) and ``dp_masks``: 14 RLEs of 256 × 256 masks over the box,
one per coarse part (``charts.COARSE_PARTS``), ``[]`` where the part is absent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pycocotools.mask as mask_util

from model.data.charts import COARSE_PARTS, FINE_TO_COARSE

MASK_SIZE = 256
CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"}]


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool -> COCO compressed RLE with ``counts`` as str (JSON-ready)."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """COCO ``segmentation`` (polygons, uncompressed or compressed RLE) -> (H, W) bool."""
    if isinstance(segmentation, list):  # polygons
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_util.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_util.decode(rle).astype(bool)


def box_grid(box_xywh: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Image pixel (row, column) under each cell of the 256 × 256 box frame: two (256,) arrays."""
    x, y, w, h = box_xywh
    cells = (np.arange(MASK_SIZE) + 0.5) / MASK_SIZE
    cols = np.clip(np.floor(x + cells * w), 0, width - 1).astype(np.int64)
    rows = np.clip(np.floor(y + cells * h), 0, height - 1).astype(np.int64)
    return rows, cols


def densepose_fields(
    parts: np.ndarray,
    uv: np.ndarray,
    mask: np.ndarray,
    box_xywh: np.ndarray,
    rng: np.random.Generator,
    num_points: int,
) -> dict[str, Any]:
    """``dp_*`` fields of one person.

    Args:
        parts: (H, W) uint8 chart I; uv: (H, W, 2) float32; mask: (H, W) bool, the person's
            visible pixels; box_xywh: (4,) its box; num_points: points to sample (at most the
            person's labelled pixels, drawn without replacement).
    """
    height, width = parts.shape
    ys, xs = np.nonzero(mask & (parts > 0))
    pick = np.sort(rng.choice(len(xs), size=min(num_points, len(xs)), replace=False))
    ys, xs = ys[pick], xs[pick]
    x, y, w, h = box_xywh
    rows, cols = box_grid(box_xywh, height, width)
    coarse = np.where(mask[np.ix_(rows, cols)], FINE_TO_COARSE[parts[np.ix_(rows, cols)]], 0)
    return {
        "dp_x": np.round((xs + 0.5 - x) / w * MASK_SIZE, 3).tolist(),
        "dp_y": np.round((ys + 0.5 - y) / h * MASK_SIZE, 3).tolist(),
        "dp_I": parts[ys, xs].astype(np.float64).tolist(),
        "dp_U": np.round(uv[ys, xs, 0].astype(np.float64), 6).tolist(),
        "dp_V": np.round(uv[ys, xs, 1].astype(np.float64), 6).tolist(),
        "dp_masks": [
            encode_rle(coarse == c) if (coarse == c).any() else []
            for c in range(1, len(COARSE_PARTS) + 1)
        ],
    }


def person_annotations(
    parts: np.ndarray,
    uv: np.ndarray,
    instance: np.ndarray,
    rng: np.random.Generator,
    *,
    num_points: int,
    min_pixels: int,
) -> list[dict[str, Any]]:
    """Annotations (without ``id``/``image_id``) of every visible person of a labelled image.

    People with fewer than ``min_pixels`` visible pixels are ``iscrowd`` = 1 (ignored) and
    carry no ``dp_*`` fields. ``dense_id`` is the person's value in ``instance``.
    """
    annotations = []
    for person in range(1, int(instance.max()) + 1):
        mask = instance == person
        area = int(mask.sum())
        if area == 0:
            continue
        ys, xs = np.nonzero(mask)
        box = np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()])
        annotation: dict[str, Any] = {
            "category_id": 1,
            "bbox": [float(v) for v in box],
            "area": float(area),
            "segmentation": encode_rle(mask),
            "iscrowd": int(area < min_pixels),
            "dense_id": person,
        }
        if area >= min_pixels:
            annotation.update(
                densepose_fields(parts, uv, mask, box.astype(np.float64), rng, num_points)
            )
        annotations.append(annotation)
    return annotations
