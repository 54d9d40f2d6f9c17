"""FCOS location grid and per-location target assignment (FCOS, Tian et al. 2019; CondInst).

Locations of all levels are concatenated level by level, each level row-major, so a batch's
head outputs flatten to ``(B, L)`` with ``L = sum(h_l * w_l)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

SIZE_RANGE_FACTOR = 8
"""Boundary between level l and l + 1, as a multiple of level l's stride (FCOS: 64 on P3)."""


def level_size_ranges(strides: Sequence[int]) -> list[tuple[float, float]]:
    """FCOS's object-size range (lower, upper) of each level, in pixels.

    The rule: the boundary between level l and level l + 1 is ``8 * strides[l]``; the first
    level starts at 0 and the last level is unbounded. For strides (8, 16, 32, 64, 128) this is
    FCOS's (0, 64), (64, 128), (128, 256), (256, 512), (512, inf); with fewer levels the last
    one takes everything above its lower bound, e.g. (8, 16, 32) -> (0, 64), (64, 128),
    (128, inf). A location is assigned an object only if the largest of its four distances
    to the box sides lies in its level's range.
    """
    if len(strides) == 0:
        raise ValueError("expected at least one stride")
    bounds = [0.0, *(float(SIZE_RANGE_FACTOR * s) for s in strides[:-1]), math.inf]
    return list(itertools.pairwise(bounds))


@dataclass
class FcosTargets:
    """FCOS targets of one image over the L concatenated locations.

    Attributes:
        matched: (L,) int64, index of the GT box assigned to each location, -1 = negative.
        box_ltrb: (L, 4) float32, distances (left, top, right, bottom) in pixels from the
            location to the sides of its matched box; 0 where ``matched`` is -1.
        centerness: (L,) float32, FCOS centerness of ``box_ltrb`` in [0, 1]; 0 where
            ``matched`` is -1.
    """

    matched: Tensor
    box_ltrb: Tensor
    centerness: Tensor

    def __len__(self) -> int:
        return int(self.matched.shape[0])


def ltrb_to_xyxy(locations: Tensor, ltrb: Tensor) -> Tensor:
    """Decode (..., 4) distances (left, top, right, bottom) from (..., 2) points to xyxy boxes."""
    return torch.cat([locations - ltrb[..., :2], locations + ltrb[..., 2:]], dim=-1)


def xyxy_to_ltrb(locations: Tensor, boxes_xyxy: Tensor) -> Tensor:
    """(L, 2) points and (G, 4) boxes -> (L, G, 4) distances (left, top, right, bottom).

    Negative where a point lies outside a box.
    """
    points = locations[:, None, :]  # [L, 1, 2]
    return torch.cat([points - boxes_xyxy[None, :, :2], boxes_xyxy[None, :, 2:] - points], dim=2)


def centerness(ltrb: Tensor) -> Tensor:
    """FCOS centerness sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) of (..., 4) distances.

    Defined for positive distances; 1 at a box's centre.
    """
    left_right = ltrb[..., 0::2]
    top_bottom = ltrb[..., 1::2]
    ratio_x = left_right.min(dim=-1).values / left_right.max(dim=-1).values
    ratio_y = top_bottom.min(dim=-1).values / top_bottom.max(dim=-1).values
    return torch.sqrt(ratio_x * ratio_y)


def _per_location(values: Sequence[float], locations: list[Tensor]) -> Tensor:
    """Repeat one value per level to a (L,) float32 tensor over the concatenated locations."""
    device = locations[0].device
    return torch.cat(
        [
            torch.full((len(loc),), v, dtype=torch.float32, device=device)
            for v, loc in zip(values, locations, strict=True)
        ]
    )


def _in_center_region(points: Tensor, boxes_xyxy: Tensor, stride: Tensor, radius: float) -> Tensor:
    """(L, G) bool: point inside its box's centre region (centre ± radius * stride ∩ box).

    The region is clipped to the box, so a point inside it is inside the box as well.
    """
    centers = (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) / 2  # [G, 2]
    half = radius * stride[:, None, None]  # [L, 1, 1]
    region_lo = torch.maximum(centers[None] - half, boxes_xyxy[None, :, :2])  # [L, G, 2]
    region_hi = torch.minimum(centers[None] + half, boxes_xyxy[None, :, 2:])  # [L, G, 2]
    p = points[:, None, :]  # [L, 1, 2]
    return ((p > region_lo) & (p < region_hi)).all(dim=2)


def assign_fcos_targets(
    locations: list[Tensor],
    strides: Sequence[int],
    boxes_xyxy: Tensor,
    *,
    center_sampling_radius: float = 1.5,
) -> FcosTargets:
    """Assign each location of one image to at most one GT box by FCOS's rules.

    A location is positive for a box if it lies strictly inside the box's centre-sampling
    region (box centre ± ``center_sampling_radius`` * the location's stride, clipped to the
    box; hence also inside the box) and the largest of its four distances to the box sides
    lies in its level's size range (``level_size_ranges``, bounds inclusive). When several
    boxes qualify the one of smallest area wins (ties: the lower box index).

    Args:
        locations: per level (h_l * w_l, 2) float32 (x, y) from ``fcos_locations``.
        strides: stride of each level.
        boxes_xyxy: (G, 4) GT boxes in pixels, G >= 0.
        center_sampling_radius: radius of the centre region in strides, > 0.

    Returns:
        ``FcosTargets`` over the L concatenated locations.
    """
    if len(locations) != len(strides):
        raise ValueError(
            f"expected one stride per level, got {len(locations)} levels and {len(strides)} strides"
        )
    if boxes_xyxy.ndim != 2 or boxes_xyxy.shape[1] != 4:
        raise ValueError(f"expected boxes_xyxy of shape (G, 4), got {tuple(boxes_xyxy.shape)}")
    if center_sampling_radius <= 0:
        raise ValueError(f"center_sampling_radius must be > 0, got {center_sampling_radius}")

    points = torch.cat(locations)  # [L, 2]
    num_locations = len(points)
    matched = torch.full((num_locations,), -1, dtype=torch.int64, device=points.device)
    box_ltrb = torch.zeros(num_locations, 4, dtype=torch.float32, device=points.device)
    ctr = torch.zeros(num_locations, dtype=torch.float32, device=points.device)
    if len(boxes_xyxy) == 0:
        return FcosTargets(matched=matched, box_ltrb=box_ltrb, centerness=ctr)

    boxes = boxes_xyxy.to(device=points.device, dtype=torch.float32)
    ranges = level_size_ranges(strides)
    stride = _per_location(strides, locations)  # [L]
    size_lo = _per_location([lo for lo, _ in ranges], locations)  # [L]
    size_hi = _per_location([hi for _, hi in ranges], locations)  # [L]

    ltrb = xyxy_to_ltrb(points, boxes)  # [L, G, 4]
    max_dist = ltrb.max(dim=2).values  # [L, G]
    qualifies = (
        _in_center_region(points, boxes, stride, center_sampling_radius)
        & (max_dist >= size_lo[:, None])
        & (max_dist <= size_hi[:, None])
    )  # [L, G]

    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # [G]
    candidate_area = torch.where(qualifies, area[None, :], torch.inf)  # [L, G]
    best_area, best = candidate_area.min(dim=1)  # [L], [L]; ties -> first (lowest) index
    pos_index = torch.isfinite(best_area).nonzero().squeeze(1)  # [L_pos]
    matched[pos_index] = best[pos_index]
    box_ltrb[pos_index] = ltrb[pos_index, best[pos_index]]
    ctr[pos_index] = centerness(box_ltrb[pos_index])
    return FcosTargets(matched=matched, box_ltrb=box_ltrb, centerness=ctr)
