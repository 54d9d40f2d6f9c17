"""Training losses of DDP (paper section 5): pure functions of tensors.

L_all = L_fcos + λ1 (L_Mins + L_Mdp) + L_I + λ2 L_UV + λ3 L_s (eq. 7-9). The weighting and the
choice of which instances/points enter each term belong to the caller; every function here
returns a scalar that stays connected to the autograd graph (0 with zero gradient) when there
is nothing to learn from: no positives, no points, no instances, no active pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from model.training.fcos_targets import FcosTargets, ltrb_to_xyxy

CENTERNESS_SUM_EPS = 1e-6
"""Floor of the centerness-target sum that normalises the box loss."""


def _check_shape(name: str, tensor: Tensor, expected: Sequence[int | None]) -> None:
    """Raise a ValueError unless ``tensor`` has ``expected`` shape (None = any size)."""
    ok = tensor.ndim == len(expected) and all(
        e is None or e == s for e, s in zip(expected, tensor.shape, strict=True)
    )
    if not ok:
        shown = tuple("*" if e is None else e for e in expected)
        raise ValueError(f"expected {name} of shape {shown}, got {tuple(tensor.shape)}")


# --------------------------------------------------------------------------- FCOS (L_fcos)


def fcos_losses(
    cls_logits: Tensor,
    box_ltrb: Tensor,
    centerness_logits: Tensor,
    targets: Sequence[FcosTargets],
    locations: Tensor,
    *,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> dict[str, Tensor]:
    """FCOS's three losses over a batch (one class: person).

    Args:
        cls_logits: (B, L) classification logits.
        box_ltrb: (B, L, 4) predicted distances (left, top, right, bottom) in pixels, >= 0.
        centerness_logits: (B, L) centerness logits.
        targets: B ``FcosTargets``, one per image, over the same L locations.
        locations: (L, 2) (x, y) of the concatenated locations of all levels.
        focal_alpha, focal_gamma: of the sigmoid focal loss.

    Returns:
        ``fcos_cls``: sigmoid focal loss summed over all B * L locations / max(N_pos, 1);
        ``fcos_box``: GIoU loss of the boxes decoded from location ± ltrb (prediction and
        target alike) at positives, weighted by the centerness targets / max(Σ centerness
        targets, 1e-6);
        ``fcos_ctr``: BCE-with-logits of the centerness at positives, summed / max(N_pos, 1).
        All scalars; N_pos = positive locations in the batch.
    """
    _check_shape("cls_logits", cls_logits, (None, None))
    batch, num_locations = cls_logits.shape
    _check_shape("box_ltrb", box_ltrb, (batch, num_locations, 4))
    _check_shape("centerness_logits", centerness_logits, (batch, num_locations))
    _check_shape("locations", locations, (num_locations, 2))
    if len(targets) != batch or any(len(t) != num_locations for t in targets):
        raise ValueError(
            f"expected {batch} targets over {num_locations} locations, got "
            f"{[len(t) for t in targets]}"
        )

    matched = torch.stack([t.matched for t in targets])  # [B, L]
    positive = matched >= 0  # [B, L]
    num_pos = max(int(positive.sum()), 1)

    cls_loss = (
        sigmoid_focal_loss(
            cls_logits,
            positive.to(cls_logits.dtype),
            alpha=focal_alpha,
            gamma=focal_gamma,
            reduction="sum",
        )
        / num_pos
    )

    ctr_target = torch.stack([t.centerness for t in targets])[positive].to(
        centerness_logits.dtype
    )  # [N_pos]
    ltrb_target = torch.stack([t.box_ltrb for t in targets])[positive].to(
        box_ltrb.dtype
    )  # [N_pos, 4]
    pos_locations = locations[None].expand(batch, -1, -1)[positive]  # [N_pos, 2]
    giou = generalized_box_iou_loss(
        ltrb_to_xyxy(pos_locations, box_ltrb[positive]),
        ltrb_to_xyxy(pos_locations, ltrb_target),
        reduction="none",
    )  # [N_pos]
    box_loss = (giou * ctr_target).sum() / ctr_target.sum().clamp(min=CENTERNESS_SUM_EPS)

    ctr_loss = (
        F.binary_cross_entropy_with_logits(centerness_logits[positive], ctr_target, reduction="sum")
        / num_pos
    )
    return {"fcos_cls": cls_loss, "fcos_box": box_loss, "fcos_ctr": ctr_loss}


# --------------------------------------------------------------------------- masks (L_Mins, L_Mdp)


def dice_loss(mask_logits: Tensor, target: Tensor, *, eps: float = 1.0) -> Tensor:
    """Per-mask dice loss as in CondInst, with additive smoothing.

    ``1 - (2 Σ p·y + eps) / (Σ p² + Σ y² + eps)`` with p = sigmoid(mask_logits). CondInst
    puts a tiny eps in the denominator only; here eps = 1 is added to both so that an empty
    target mask still gives a gradient towards an empty prediction (loss 0 when both are
    empty) instead of a constant 1. On masks of hundreds of pixels it changes the loss by
    well under 1 %.

    Args:
        mask_logits: (P, H, W) logits.
        target: (P, H, W) in {0, 1} (bool or float).
        eps: the smoothing term, >= 0.

    Returns:
        (P,) losses in [0, 1].
    """
    if mask_logits.shape != target.shape or mask_logits.ndim != 3:
        raise ValueError(
            "expected mask_logits and target of the same shape (P, H, W), got "
            f"{tuple(mask_logits.shape)} and {tuple(target.shape)}"
        )
    probs = mask_logits.sigmoid().flatten(1)  # [P, H*W]
    y = target.to(probs.dtype).flatten(1)  # [P, H*W]
    intersection = (probs * y).sum(dim=1)
    denominator = (probs * probs).sum(dim=1) + (y * y).sum(dim=1)
    return 1 - (2 * intersection + eps) / (denominator + eps)


# --------------------------------------------------------------------------- IUV (L_I, L_UV)


def sample_at_points(maps: Tensor, point_image: Tensor, point_xy: Tensor, *, stride: int) -> Tensor:
    """Bilinearly sample (B, C, h, w) maps at points given in input pixels.

    The map has 1/stride the input's resolution: cell (i, j) covers the input pixels
    [j*s, (j+1)*s) × [i*s, (i+1)*s), so its value sits at the continuous input position
    ((j + 0.5) * s, (i + 0.5) * s) — the convention of ``F.interpolate(..., align_corners=
    False)``. Points are continuous input positions (pixel k's centre is k + 0.5), so in
    map-cell units a point is at u = x / s (cell j's centre at u = j + 0.5). ``grid_sample``
    with ``align_corners=False`` puts normalised -1 at the left edge of cell 0 and +1 at the
    right edge of cell w-1, i.e. u = (g + 1) / 2 * w; hence g = 2 x / (s w) - 1 (likewise y
    with h). Points beyond the outermost cell centres take the border value
    (``padding_mode="border"``), not a blend with zeros.

    Args:
        maps: (B, C, h, w).
        point_image: (P,) int64, image of each point, in [0, B).
        point_xy: (P, 2) (x, y) in input pixels.
        stride: input pixels per map cell.

    Returns:
        (P, C) sampled values, connected to ``maps``.
    """
    batch, _, height, width = maps.shape
    num_points = len(point_image)
    if num_points and not 0 <= int(point_image.min()) <= int(point_image.max()) < batch:
        raise ValueError(f"point_image must lie in [0, {batch}), got values outside")
    scale = torch.tensor(
        [2.0 / (stride * width), 2.0 / (stride * height)], dtype=maps.dtype, device=maps.device
    )
    grid_xy = point_xy.to(maps.dtype) * scale - 1  # [P, 2], normalised (x, y)

    # Points are ragged over images: give each point a slot among its image's points and
    # sample all images at once through a (B, 1, P_max, 2) grid padded with zeros.
    counts = torch.bincount(point_image, minlength=batch)  # [B]
    first = torch.cumsum(counts, 0) - counts  # [B], start of each image in sorted order
    order = torch.argsort(point_image, stable=True)
    slot = torch.empty_like(point_image)
    slot[order] = torch.arange(num_points, device=maps.device) - first[point_image[order]]
    grid = maps.new_zeros(batch, 1, max(int(counts.max()), 1), 2)  # [B, 1, P_max, 2]
    grid[point_image, 0, slot] = grid_xy
    sampled = F.grid_sample(
        maps, grid, mode="bilinear", padding_mode="border", align_corners=False
    )  # [B, C, 1, P_max]
    return sampled[point_image, :, 0, slot]  # [P, C]


def _check_points(
    logits: Tensor, point_image: Tensor, point_xy: Tensor, point_part: Tensor
) -> None:
    _check_shape("logits", logits, (None, None, None, None))
    num_points = len(point_image)
    _check_shape("point_image", point_image, (num_points,))
    _check_shape("point_xy", point_xy, (num_points, 2))
    _check_shape("point_part", point_part, (num_points,))


def part_loss(
    part_logits: Tensor,
    point_image: Tensor,
    point_xy: Tensor,
    point_part: Tensor,
    *,
    stride: int,
) -> Tensor:
    """L_I: cross-entropy of the part logits sampled at the annotated points.

    Args:
        part_logits: (B, K, H/stride, W/stride), K = 25 (0 = background).
        point_image: (P,) int64, image of each point.
        point_xy: (P, 2) (x, y) in input pixels, pixel centres at +0.5 (see
            ``sample_at_points`` for the mapping onto the logit grid).
        point_part: (P,) int64 in [0, K).
        stride: input pixels per logit cell.

    Returns:
        Scalar, mean over the P points (0 when P = 0).
    """
    _check_points(part_logits, point_image, point_xy, point_part)
    logits = sample_at_points(part_logits, point_image, point_xy, stride=stride)  # [P, K]
    return F.cross_entropy(logits, point_part, reduction="sum") / max(len(point_part), 1)


def uv_loss(
    u_logits: Tensor,
    v_logits: Tensor,
    point_image: Tensor,
    point_xy: Tensor,
    point_part: Tensor,
    point_uv: Tensor,
    *,
    stride: int,
    beta: float,
) -> Tensor:
    """L_UV: smooth-L1 of the GT part's U and V channels at the annotated body points.

    The channel values are regressed directly against U, V in [0, 1] (as DensePose R-CNN
    does; no sigmoid). Points with part 0 (background) are ignored.

    Args:
        u_logits, v_logits: (B, K, H/stride, W/stride) each, one channel per part.
        point_image: (P,) int64, image of each point.
        point_xy: (P, 2) (x, y) in input pixels, pixel centres at +0.5.
        point_part: (P,) int64 in [0, K).
        point_uv: (P, 2) GT (U, V).
        stride: input pixels per cell.
        beta: smooth-L1 transition point.

    Returns:
        Scalar: Σ over body points of (smooth-L1(U) + smooth-L1(V)) / max(#body points, 1).
    """
    _check_points(u_logits, point_image, point_xy, point_part)
    _check_shape("v_logits", v_logits, tuple(u_logits.shape))
    _check_shape("point_uv", point_uv, (len(point_part), 2))
    body = point_part >= 1  # [P]
    part = point_part[body]  # [P_body]
    num_parts = u_logits.shape[1]
    sampled = sample_at_points(
        torch.cat([u_logits, v_logits], dim=1), point_image[body], point_xy[body], stride=stride
    )  # [P_body, 2K]
    pred_uv = torch.stack(
        [sampled.gather(1, part[:, None]), sampled.gather(1, part[:, None] + num_parts)], dim=1
    ).squeeze(2)  # [P_body, 2]
    loss = F.smooth_l1_loss(pred_uv, point_uv[body].to(pred_uv.dtype), beta=beta, reduction="sum")
    return loss / max(len(part), 1)


# --------------------------------------------------------------------------- smoothness (L_s)


def _neighbour_pairs(x: Tensor) -> list[tuple[Tensor, Tensor]]:
    """The two sites (first, second) of every horizontal, then every vertical, neighbour pair.

    (..., h, w) -> [((..., h, w-1), (..., h, w-1)), ((..., h-1, w), (..., h-1, w))].
    """
    return [(x[..., :, :-1], x[..., :, 1:]), (x[..., :-1, :], x[..., 1:, :])]


def _mean_edge_weights(masks: Tensor, instance_image: Tensor, batch: int) -> list[Tensor]:
    """Per image, the mean over its instances of exp(-|∇M_i|): [(B, h, w-1), (B, h-1, w)].

    An image without instances gets weight 1 (no known edge).
    """
    count = torch.bincount(instance_image, minlength=batch).to(masks.dtype)[:, None, None]
    weights = []
    for first, second in _neighbour_pairs(masks):  # [N, h, w-1], [N, h-1, w]
        total = first.new_zeros(batch, *first.shape[1:]).index_add_(
            0, instance_image, torch.exp(-(second - first).abs())
        )
        weights.append(torch.where(count > 0, total / count.clamp(min=1), 1.0))
    return weights


def smoothness_loss(
    iuv_logits: Tensor, active: Tensor, instance_masks: Tensor, instance_image: Tensor
) -> Tensor:
    """L_s, the edge-aware smoothness of eq. 12.

    For every pair (p, q) of horizontal or vertical neighbours of image b with both sites
    active::

        term(p, q) = mean_c |C[b, c, q] - C[b, c, p]|
                     * mean_{i in image b} exp(-|M_i[q] - M_i[p]|)

    and L_s = Σ term / (number of such pairs, horizontal and vertical together), 0 if there
    are none. An image without instances has edge weight 1. The masks only weight the
    pairs (no gradient flows into them).

    Args:
        iuv_logits: (B, 3K, h, w) the paper's C.
        active: (B, h, w) bool, the sites the IUV branch computed.
        instance_masks: (N, h, w) float in [0, 1], at the same scale as ``iuv_logits``.
        instance_image: (N,) int64, image of each instance.

    Returns:
        Scalar.
    """
    _check_shape("iuv_logits", iuv_logits, (None, None, None, None))
    batch, _, height, width = iuv_logits.shape
    _check_shape("active", active, (batch, height, width))
    _check_shape("instance_masks", instance_masks, (None, height, width))
    _check_shape("instance_image", instance_image, (len(instance_masks),))

    masks = instance_masks.detach().to(iuv_logits.dtype)
    weights = _mean_edge_weights(masks, instance_image, batch)
    total = iuv_logits.new_zeros(())
    num_pairs = 0
    for (c_first, c_second), (a_first, a_second), weight in zip(
        _neighbour_pairs(iuv_logits), _neighbour_pairs(active), weights, strict=True
    ):
        both_active = a_first & a_second  # [B, h', w']
        term = (c_second - c_first).abs().mean(dim=1) * weight  # [B, h', w']
        total = total + (term * both_active).sum()
        num_pairs += int(both_active.sum())
    return total / max(num_pairs, 1)
