"""From raw FCOS outputs to detections at inference: candidates, top-k, NMS, final scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image

from model.fcos_head import FcosHeadOutput


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
