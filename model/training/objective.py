"""The training objective of DDP (paper section 5, eq. 7-12) on one batch.

L = L_fcos + lambda_1 (L_Mins + L_Mdp) + L_I + lambda_2 L_UV + lambda_3 L_s.
The network runs the stages inference runs (``DDP.features``, then ``DDP.dense_pose``) with
instances chosen from the ground truth: the dynamic mask heads are trained at (up to
``max_proposals``) FCOS-positive locations, and ground-truth instance masks drive background
suppression and IAN regions (section 5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from model.config import NUM_PART_CLASSES, DDPConfig
from model.network.ddp import DDP, InstanceCoverage, InstanceLocations
from model.structures import DensePoseTargets
from model.training.fcos_targets import FcosTargets, assign_fcos_targets
from model.training.losses import dice_loss, fcos_losses, part_loss, smoothness_loss, uv_loss

MASK_STRIDE = 4


def downsample_masks(masks: Tensor, stride: int = MASK_STRIDE) -> Tensor:
    """(N, H, W) bool -> (N, H/stride, W/stride) float: the covered fraction of each cell."""
    return F.avg_pool2d(masks[:, None].float(), stride)[:, 0]


def pad_targets(targets: DensePoseTargets, height: int, width: int) -> DensePoseTargets:
    """Pad the masks of one image's targets (N, h, w) to the batch's (N, height, width)."""
    pad = (0, width - targets.masks.shape[-1], 0, height - targets.masks.shape[-2])
    return DensePoseTargets(
        boxes_xyxy=targets.boxes_xyxy,
        masks=F.pad(targets.masks, pad),
        dp_masks=F.pad(targets.dp_masks, pad),
        has_dp=targets.has_dp,
        point_instance=targets.point_instance,
        point_xy=targets.point_xy,
        point_part=targets.point_part,
        point_uv=targets.point_uv,
    )


def _sample_positives(
    fcos_targets: Sequence[FcosTargets], max_proposals: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """(image index, location index, matched GT index) of at most ``max_proposals`` positives."""
    matched = torch.stack([t.matched for t in fcos_targets])  # [B, L]
    image_index, location = torch.nonzero(matched >= 0, as_tuple=True)
    if len(image_index) > max_proposals:
        keep = torch.randperm(len(image_index), generator=generator)[:max_proposals]
        keep = keep.to(image_index.device)
        image_index, location = image_index[keep], location[keep]
    return image_index, location, matched[image_index, location]


def compute_losses(
    model: DDP,
    images: Tensor,
    targets: Sequence[DensePoseTargets],
    config: DDPConfig,
    *,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Weighted losses of one batch and their sum under ``"total"``.

    ``images`` (B, 3, H, W) normalised and padded; ``targets`` in the same pixel frame (their
    masks may be smaller than (H, W): they are padded here).
    """
    height, width = images.shape[-2:]
    targets = [pad_targets(t.to(images.device), height, width) for t in targets]
    x_agg, head = model.features(images)
    level_locations = list(torch.split(head.locations, _level_sizes(head.location_strides)))
    inst = config.instance
    fcos_targets = [
        assign_fcos_targets(
            level_locations,
            model.instance_branch.strides,
            t.boxes_xyxy,
            center_sampling_radius=inst.center_sampling_radius,
        )
        for t in targets
    ]
    losses = fcos_losses(
        head.cls_logits,
        head.box_ltrb,
        head.centerness_logits,
        fcos_targets,
        head.locations,
        focal_alpha=inst.focal_alpha,
        focal_gamma=inst.focal_gamma,
    )

    # All GT persons of the batch, flattened, at 1/4 scale.
    gt_offsets = torch.tensor([0] + [len(t) for t in targets], device=images.device).cumsum(0)
    gt_ins = torch.cat([downsample_masks(t.masks) for t in targets])  # [N, H/4, W/4]
    gt_dp = torch.cat([downsample_masks(t.dp_masks) for t in targets])
    gt_has_dp = torch.cat([t.has_dp for t in targets])
    gt_image = torch.cat(
        [torch.full((len(t),), b, device=images.device) for b, t in enumerate(targets)]
    )

    # Mask heads at sampled FCOS positives; background suppression and IAN regions from the
    # GT instance masks (section 5).
    pos_image, pos_location, pos_gt = _sample_positives(fcos_targets, inst.max_proposals, generator)
    pos_gt = pos_gt + gt_offsets[pos_image]
    maps = model.dense_pose(
        x_agg,
        InstanceLocations(
            params=head.controller[pos_image, pos_location],
            centers_xy=head.locations[pos_location],
            strides=head.location_strides[pos_location],
            image_index=pos_image,
        ),
        coverage=InstanceCoverage(fractions=gt_ins, image_index=gt_image),
    )
    mask_logits = maps.mask_logits  # [P, 2, H/4, W/4]
    losses["mask_ins"] = _mean_or_zero(dice_loss(mask_logits[:, 0], gt_ins[pos_gt]), mask_logits)
    with_dp = gt_has_dp[pos_gt]
    losses["mask_dp"] = _mean_or_zero(
        dice_loss(mask_logits[with_dp, 1], gt_dp[pos_gt[with_dp]]), mask_logits
    )

    iuv, active = maps.iuv_logits, maps.active  # [B, 3K, H/4, W/4], [B, H/4, W/4]
    point_image, point_xy, point_part, point_uv = _active_points(targets, active)
    k = NUM_PART_CLASSES
    losses["part"] = part_loss(iuv[:, :k], point_image, point_xy, point_part, stride=MASK_STRIDE)
    losses["uv"] = uv_loss(
        iuv[:, k : 2 * k],
        iuv[:, 2 * k :],
        point_image,
        point_xy,
        point_part,
        point_uv,
        stride=MASK_STRIDE,
        beta=config.loss.uv_smooth_l1_beta,
    )
    losses["smooth"] = smoothness_loss(iuv, active, gt_ins, gt_image)

    weights = {
        "mask_ins": config.loss.mask_weight,
        "mask_dp": config.loss.mask_weight,
        "uv": config.loss.uv_weight,
        "smooth": config.loss.smoothness_weight,
    }
    weighted = {name: value * weights.get(name, 1.0) for name, value in losses.items()}
    weighted["total"] = sum(weighted.values())  # type: ignore[assignment]
    return weighted


def _active_points(
    targets: Sequence[DensePoseTargets], active: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Annotated points of the batch whose 1/4-scale cell the IUV branch computes.

    Returns image index (P,), xy (P, 2), part (P,), uv (P, 2). Points outside M_fg are
    background by construction at inference (and their logits are constant zeros), so they
    carry no I/U/V loss; background points inside M_fg do.
    """
    device = active.device
    image = torch.cat(
        [torch.full((len(t.point_part),), b, device=device) for b, t in enumerate(targets)]
    )
    xy = torch.cat([t.point_xy for t in targets])
    cells = (xy / MASK_STRIDE).floor().long()
    cells[:, 0].clamp_(0, active.shape[-1] - 1)
    cells[:, 1].clamp_(0, active.shape[-2] - 1)
    keep = active[image, cells[:, 1], cells[:, 0]]
    part = torch.cat([t.point_part for t in targets])
    uv = torch.cat([t.point_uv for t in targets])
    return image[keep], xy[keep], part[keep], uv[keep]


def _level_sizes(location_strides: Tensor) -> list[int]:
    """Number of locations of each level, from the (L,) strides ordered level by level."""
    _, counts = torch.unique_consecutive(location_strides, return_counts=True)
    return counts.tolist()


def _mean_or_zero(values: Tensor, anchor: Tensor) -> Tensor:
    """Mean of (P,) losses, or a zero connected to ``anchor``'s graph when P = 0."""
    return values.mean() if values.numel() else anchor.sum() * 0.0
