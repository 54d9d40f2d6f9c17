"""From raw FCOS outputs to detections at inference: candidates, top-k, NMS, final scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image

from model.config import MaskNMSName
from model.network.fcos_head import FcosHeadOutput


@dataclass
class SelectedLocations:
    """The FCOS locations kept as persons (N in all, over the batch).

    Attributes:
        image_index: (N,) int64.
        boxes_xyxy: (N, 4) float32 in padded-input pixels.
        scores: (N,) float32, sqrt(sigmoid(cls) * sigmoid(centerness)).
        params: (N, P) dynamic mask-head parameters.
        centers_xy: (N, 2) float32, the locations (input pixels).
        strides: (N,) float32, strides of their levels.
    """

    image_index: Tensor
    boxes_xyxy: Tensor
    scores: Tensor
    params: Tensor
    centers_xy: Tensor
    strides: Tensor


def decode_boxes(locations: Tensor, box_ltrb: Tensor) -> Tensor:
    """(L, 2) locations (x, y) and (..., L, 4) distances -> (..., L, 4) boxes xyxy."""
    xy = locations.expand(*box_ltrb.shape[:-1], 2)
    return torch.cat([xy - box_ltrb[..., :2], xy + box_ltrb[..., 2:]], dim=-1)


def select_detections(
    head: FcosHeadOutput,
    image_sizes: Tensor,
    *,
    candidate_score_threshold: float,
    pre_nms_top_k: int,
    nms_iou_threshold: float,
    max_detections: int,
    score_threshold: float,
) -> SelectedLocations:
    """Per image: locations with sigmoid(cls) above the candidate threshold, the top k of them,
    class-agnostic NMS on sqrt(cls * ctr), at most ``max_detections`` above ``score_threshold``.

    ``image_sizes`` (B, 2) are (height, width) of the unpadded images; boxes are clipped to them.
    """
    cls_prob = head.cls_logits.sigmoid()
    scores_all = torch.sqrt(cls_prob * head.centerness_logits.sigmoid())
    boxes_all = decode_boxes(head.locations, head.box_ltrb)
    kept: list[tuple[int, Tensor, Tensor, Tensor]] = []
    for b in range(cls_prob.shape[0]):
        candidates = torch.nonzero(cls_prob[b] > candidate_score_threshold).squeeze(1)
        if candidates.numel() > pre_nms_top_k:
            top = cls_prob[b, candidates].topk(pre_nms_top_k).indices
            candidates = candidates[top]
        height, width = (int(v) for v in image_sizes[b])
        boxes = clip_boxes_to_image(boxes_all[b, candidates], (height, width))
        scores = scores_all[b, candidates]
        keep = batched_nms(boxes, scores, torch.zeros_like(candidates), nms_iou_threshold)
        keep = keep[scores[keep] >= score_threshold][:max_detections]
        kept.append((b, candidates[keep], boxes[keep], scores[keep]))
    index = torch.cat([loc for _, loc, _, _ in kept])
    image_index = torch.cat([torch.full_like(loc, b) for b, loc, _, _ in kept])
    return SelectedLocations(
        image_index=image_index,
        boxes_xyxy=torch.cat([boxes for _, _, boxes, _ in kept]),
        scores=torch.cat([scores for _, _, _, scores in kept]),
        params=head.controller[image_index, index],
        centers_xy=head.locations[index],
        strides=head.location_strides[index],
    )


def mask_overlaps(masks: Tensor) -> tuple[Tensor, Tensor]:
    """(N, h, w) soft or hard masks in [0, 1] -> (N, N) IoU and (N, N) intersection over the
    smaller mask (1 where one mask lies inside the other), both float32; 0 for empty masks."""
    flat = masks.flatten(1).float()
    intersection = flat @ flat.t()
    areas = flat.sum(dim=1)
    union = areas[:, None] + areas[None, :] - intersection
    smaller = torch.minimum(areas[:, None], areas[None, :])
    iou = torch.where(union > 0, intersection / union.clamp(min=1e-6), 0.0)
    over_smaller = torch.where(smaller > 0, intersection / smaller.clamp(min=1e-6), 0.0)
    return iou, over_smaller


def matrix_nms_decay(overlap: Tensor, *, sigma: float) -> Tensor:
    """SOLOv2's Matrix NMS (Gaussian kernel) for one image.

    Args:
        overlap: (N, N) mask overlap of N detections sorted by score, best first.
        sigma: the Gaussian kernel's width (SOLOv2: 2.0).

    Returns:
        (N,) factors in (0, 1] by which each detection's score decays: for detection j,
        min over better detections i of exp(-sigma · (overlap_ij² - compensation_i²)), where
        compensation_i is i's own largest overlap with a detection better than it.
    """
    count = overlap.shape[0]
    if count == 0:
        return overlap.new_ones(0)
    upper = overlap.triu(diagonal=1)  # [i, j]: i better than j
    compensation = upper.max(dim=0).values  # [N]: each one's largest overlap with a better one
    decay = torch.exp(-sigma * (upper**2 - compensation[:, None] ** 2))
    decay = torch.where(torch.ones_like(upper, dtype=torch.bool).triu(diagonal=1), decay, 1.0)
    return decay.min(dim=0).values


def suppress_duplicate_masks(
    mask_probabilities: Tensor,
    scores: Tensor,
    image_index: Tensor,
    *,
    method: MaskNMSName,
    threshold: float,
    sigma: float,
    score_threshold: float,
) -> tuple[Tensor, Tensor]:
    """Duplicates of one person go: several boxes whose masks cover the same pixels.

    Args:
        mask_probabilities: (N, h, w) float in [0, 1], the instance masks at 1/4 scale.
        scores: (N,) detection scores; image_index: (N,) int64.
        method: ``none``; ``hard``: drop a detection whose mask lies over ``threshold`` inside
            (intersection over the smaller mask) a better one of its image; ``matrix``: decay
            scores by Matrix NMS on mask IoU (``sigma``) and drop those below
            ``score_threshold``.

    Returns:
        kept (K,) int64 indices into the N detections, in their original order, and the
        (K,) scores they keep (decayed for ``matrix``).
    """
    if method == "none" or len(scores) == 0:
        return torch.arange(len(scores), device=scores.device), scores
    hard = mask_probabilities > 0.5
    new_scores = scores.clone()
    keep = torch.ones_like(scores, dtype=torch.bool)
    for b in image_index.unique().tolist():
        members = torch.nonzero(image_index == b).squeeze(1)
        members = members[torch.argsort(scores[members], descending=True, stable=True)]
        iou, over_smaller = mask_overlaps(hard[members])
        if method == "hard":
            inside_better = (over_smaller > threshold).triu(diagonal=1)
            keep_b = torch.ones(len(members), dtype=torch.bool, device=scores.device)
            for j in range(len(members)):  # greedy: only kept detections suppress
                if bool((inside_better[:j, j] & keep_b[:j]).any()):
                    keep_b[j] = False
            keep[members] = keep_b
        elif method == "matrix":
            decay = matrix_nms_decay(iou, sigma=sigma)  # float32 (masks), scores: bf16 too
            new_scores[members] = (scores[members] * decay).to(new_scores.dtype)
        else:
            raise ValueError(f"unknown mask NMS {method!r}; choose none, hard or matrix")
    keep &= new_scores >= score_threshold
    kept = torch.nonzero(keep).squeeze(1)
    return kept, new_scores[kept]
