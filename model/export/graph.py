"""``DDP.forward`` as one exportable graph: padded images in, the raw per-person outputs out.

The eager network chooses instances with Python control flow (a loop over the images of the
batch, ``if`` on tensor sizes, grouped convolutions with one group per person, a neighbour
table built with Python integers); none of that survives ``torch.export``. ``ExportGraph``
walks the same stages with the same weights using only ops whose sizes may be data-dependent
(N persons, M active sites, B images, H and W are all dynamic):

* detection: per-image top-k as one batched ``topk``; class-agnostic NMS of every image in one
  ``torchvision.ops.nms`` (ONNX ``NonMaxSuppression``), images kept apart by offsetting their
  boxes; the ``max_detections`` cap by each detection's rank within its image;
* dynamic mask heads: one batched matrix product per layer (N dynamic) instead of a grouped
  convolution (groups = N is an attribute in ONNX, hence static);
* Matrix NMS on the instance masks: all images at once, overlaps across images zeroed;
* the sparse IUV branch as gather / GEMM / scatter: the active sites by ``nonzero``, each
  submanifold 3x3 conv one gather of the 9 neighbours and one GEMM, IAN (eq. 2-4) as
  scatter-adds over (site, region) pairs, the logits scattered back to a dense map.

What stays outside the graph is the per-person resampling to image pixels
(``model.inference.postprocess``), which every runtime shares. ``tests/test_export.py``
checks the graph against eager ``DDP.forward``.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms

from model.network.ddp import DDP
from model.network.detection import decode_boxes, mask_overlaps
from model.network.dynamic_mask_head import NUM_MASK_OUTPUTS, relative_coordinates, split_params
from model.network.fcos_head import FcosHeadOutput, fcos_locations
from model.network.ian import InstanceAwareNorm
from model.network.instance_branch import SIZE_OF_INTEREST_PER_STRIDE
from model.network.iuv_branch import IUVBranch, SparseResidualBlock, SparseSubBlock

INPUT_NAMES = ("images", "image_sizes")
"""images (B, 3, H, W) float32 normalised and padded (H, W multiples of 32); image_sizes
(B, 2) int64, (height, width) of each image inside the padding."""
OUTPUT_NAMES = ("image_index", "boxes_xyxy", "scores", "mask_logits", "iuv_logits", "active")
"""The fields of ``model.structures.DDPOutput`` (see ``ExportGraph.forward``)."""


class ExportGraph(nn.Module):
    """``forward(images (B, 3, H, W) float32, image_sizes (B, 2) int64)`` ->

    * image_index (N,) int64, boxes_xyxy (N, 4) float32 (padded-input pixels), scores (N,)
      float32: the persons, image by image, best first within an image;
    * mask_logits (N, 2, H/4, W/4) float32: M_ins and M_dp logits;
    * iuv_logits (B, 75, H/4, W/4) float32, zero outside ``active``;
    * active (B, H/4, W/4) bool: M_fg, the sites the IUV branch computed.

    The same numbers as ``DDP.forward`` (up to float rounding), from the same parameters.
    """

    def __init__(self, model: DDP) -> None:
        super().__init__()
        if model.detection.mask_nms == "hard":
            raise ValueError(
                "mask_nms='hard' (a greedy loop over the detections) has no exportable form; "
                "export a config with mask_nms 'matrix' or 'none'"
            )
        self.model = model

    def forward(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, ...]:
        model = self.model
        pyramid = model.backbone(images)
        x_agg = model.aggregation(pyramid)  # [B, C, H/4, W/4]
        head = self.heads(pyramid)
        image_index, boxes, scores, locations = self.detect(head, image_sizes, images.shape[-2:])
        mask_logits = self.masks(x_agg, head, image_index, locations)  # [N, 2, H/4, W/4]
        probabilities = mask_logits[:, 0].sigmoid()
        if model.detection.mask_nms == "matrix":
            scores = scores * self.matrix_nms_decay(probabilities, image_index)
            kept = torch.nonzero(scores >= model.detection.detection_score_threshold)[:, 0]
            image_index, boxes, scores = image_index[kept], boxes[kept], scores[kept]
            mask_logits, probabilities = mask_logits[kept], probabilities[kept]
        regions = self.instance_regions(probabilities)  # [N, H/4, W/4]
        active = model.foreground(regions, image_index, x_agg.shape[0])  # [B, H/4, W/4]
        iuv_logits = sparse_iuv_branch(model.iuv_branch, x_agg, active, regions, image_index)
        return image_index, boxes, scores, mask_logits, iuv_logits, active

    def heads(self, pyramid: dict[str, Tensor]) -> FcosHeadOutput:
        """``InstanceBranch.heads``, with each level's size kept symbolic (``FcosHead.forward``
        turns them into Python integers, which would fix H and W at export)."""
        branch = self.model.instance_branch
        fcos = branch.head
        levels = [pyramid[name] for name in ("p3", "p4", "p5")][: len(branch.strides)]
        levels += branch.extra_levels(pyramid["p5"])
        outputs: dict[str, list[Tensor]] = {name: [] for name in ("cls", "box", "ctr", "params")}
        locations, strides = [], []
        for x, stride in zip(levels, branch.strides, strict=True):
            cls_features, box_features = fcos.cls_tower(x), fcos.box_tower(x)
            outputs["cls"].append(fcos.cls_logits(cls_features).flatten(2))  # [B, 1, HW]
            outputs["box"].append(F.relu(fcos.box_ltrb(box_features)).flatten(2) * stride)
            outputs["ctr"].append(fcos.centerness(box_features).flatten(2))
            outputs["params"].append(fcos.controller(box_features).flatten(2))  # [B, P, HW]
            [level_locations] = fcos_locations([(x.shape[-2], x.shape[-1])], [stride], x.device)
            locations.append(level_locations)  # [HW, 2]
            strides.append(level_locations.new_full((level_locations.shape[0],), float(stride)))
        joined = {name: torch.cat(parts, dim=2).transpose(1, 2) for name, parts in outputs.items()}
        return FcosHeadOutput(
            cls_logits=joined["cls"][..., 0],  # [B, L]
            box_ltrb=joined["box"],  # [B, L, 4]
            centerness_logits=joined["ctr"][..., 0],
            controller=joined["params"],  # [B, L, P]
            locations=torch.cat(locations),  # [L, 2]
            location_strides=torch.cat(strides),  # [L]
        )

    def detect(
        self, head: FcosHeadOutput, image_sizes: Tensor, input_size: torch.Size
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``model.network.detection.select_detections`` for the whole batch at once.

        Returns image_index (N,), boxes (N, 4), scores (N,) and the (N,) FCOS location of
        each person, ordered by image, then by descending score.
        """
        cfg = self.model.detection
        cls_prob = head.cls_logits.sigmoid()  # [B, L]
        scores_all = torch.sqrt(cls_prob * head.centerness_logits.sigmoid())
        boxes_all = decode_boxes(head.locations, head.box_ltrb)  # [B, L, 4]
        # The top k by cls_prob, then those above the candidate threshold: the same set as the
        # candidates above it, then their top k.
        k = torch.sym_min(cfg.pre_nms_top_k, cls_prob.shape[1])
        top_prob, top_location = cls_prob.topk(k, dim=1)  # [B, k]
        top_scores = scores_all.gather(1, top_location)
        top_boxes = boxes_all.gather(1, top_location[..., None].expand(-1, -1, 4))
        height, width = image_sizes.to(top_boxes.dtype).unbind(1)  # [B] each
        limits = torch.stack([width, height, width, height], dim=1)[:, None]  # [B, 1, 4]
        top_boxes = torch.minimum(top_boxes.clamp(min=0.0), limits)
        # Boxes under the score threshold never suppress a box above it (NMS goes by score),
        # so dropping them before NMS keeps the same persons as dropping them after.
        valid = (top_prob > cfg.candidate_score_threshold) & (
            top_scores >= cfg.detection_score_threshold
        )
        flat = torch.nonzero(valid.flatten())[:, 0]  # [C]
        image_index = flat // top_location.shape[1]  # // k
        location = top_location.flatten()[flat]
        boxes = top_boxes.flatten(0, 1)[flat]  # [C, 4]
        scores = top_scores.flatten()[flat]
        # One NMS for all images: image b's boxes shifted by b * (largest side + 1) overlap
        # no other image's.
        largest_side = cast(int, torch.sym_max(*input_size))  # a SymInt when exporting
        shift = (image_index.to(boxes.dtype) * (largest_side + 1))[:, None]
        keep = nms(boxes + shift, scores, cfg.nms_iou_threshold)  # by descending score
        torch._check(keep.shape[0] <= scores.shape[0])  # bounds every size that follows
        image_index, location, boxes, scores = (
            image_index[keep],
            location[keep],
            boxes[keep],
            scores[keep],
        )
        position = torch.arange(keep.shape[0], device=keep.device)
        order = torch.argsort(image_index * keep.shape[0] + position)  # by image, stable
        image_index, location, boxes, scores = (
            image_index[order],
            location[order],
            boxes[order],
            scores[order],
        )
        per_image = segment_sum(
            image_index, torch.ones_like(image_index)[:, None], head.cls_logits.shape[0]
        )[:, 0]
        first = torch.cumsum(per_image, 0) - per_image  # [B]: where each image's run starts
        rank = position - first[image_index]
        capped = torch.nonzero(rank < cfg.max_detections)[:, 0]
        return image_index[capped], boxes[capped], scores[capped], location[capped]

    def masks(
        self, x_agg: Tensor, head: FcosHeadOutput, image_index: Tensor, location: Tensor
    ) -> Tensor:
        """The dynamic mask heads of the N persons (``DynamicMaskHead.forward``) as batched
        matrix products: (N, 2, H/4, W/4) logits."""
        branch = self.model.instance_branch
        features = branch.mask_features(x_agg)  # [B, C, h, w]
        height, width = features.shape[-2:]
        params = head.controller[image_index, location]  # [N, P]
        sizes_of_interest = head.location_strides[location] * SIZE_OF_INTEREST_PER_STRIDE
        coords = relative_coordinates(
            head.locations[location],
            sizes_of_interest,
            height=height,
            width=width,
            stride=branch.mask_head.in_stride,
        )  # [N, 2, h, w]
        x = torch.cat([features[image_index], coords.to(features.dtype)], dim=1).flatten(2)
        shapes = branch.mask_head.shapes
        weights, biases = split_params(params, shapes)
        for index, (weight, bias, (cin, cout)) in enumerate(
            zip(weights, biases, shapes, strict=True)
        ):
            x = torch.baddbmm(bias.reshape(-1, cout, 1), weight.reshape(-1, cout, cin), x)
            if index < len(shapes) - 1:
                x = F.relu(x)
        logits = x.reshape(-1, NUM_MASK_OUTPUTS, height, width)
        # size, not scale_factor=2: the same sampling, without specialising h and w
        size = (2 * height, 2 * width)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def matrix_nms_decay(self, probabilities: Tensor, image_index: Tensor) -> Tensor:
        """``model.network.detection.matrix_nms_decay`` of every image at once: (N,) factors.

        The persons are ordered by image and by descending score within it, as
        ``suppress_duplicate_masks`` orders each image's; overlaps across images are zero,
        which leaves each image's minimum as it is (its own diagonal contributes 1).
        """
        iou, _ = mask_overlaps(probabilities > 0.5)  # [N, N]
        iou = torch.where(image_index[:, None] == image_index[None, :], iou, 0.0)
        better = torch.ones_like(iou, dtype=torch.bool).triu(diagonal=1)  # [i, j]: i before j
        upper = torch.where(better, iou, 0.0)
        compensation = torch.cat([upper, upper.new_zeros(1, upper.shape[1])]).max(dim=0).values
        decay = torch.exp(
            -self.model.detection.mask_nms_sigma * (upper**2 - compensation[:, None] ** 2)
        )
        decay = torch.where(better, decay, 1.0)
        return torch.cat([decay, decay.new_ones(1, decay.shape[1])]).min(dim=0).values

    def instance_regions(self, probabilities: Tensor) -> Tensor:
        """``DDP.instance_regions``: (N, h, w) probabilities -> (N, h, w) bool regions.

        The dilation is the maximum over the shifted masks rather than a max-pool, which
        OpenVINO refuses on a batch (or channels) of zero persons.
        """
        regions = probabilities > self.model.detection.mask_threshold
        dilation = self.model.region_dilation
        if dilation == 0:
            return regions
        height, width = regions.shape[-2:]
        padded = F.pad(regions.float(), (dilation, dilation, dilation, dilation))
        size = 2 * dilation + 1
        shifted = [
            padded[:, dy : dy + height, dx : dx + width] for dy in range(size) for dx in range(size)
        ]
        return torch.stack(shifted).amax(dim=0) > 0


def sparse_iuv_branch(
    branch: IUVBranch, x_agg: Tensor, active: Tensor, region_masks: Tensor, region_image: Tensor
) -> Tensor:
    """``IUVBranch.forward`` as gather / GEMM / scatter: X_agg (B, C, h, w), M_fg (B, h, w)
    bool, R instance regions (R, h, w) bool of images (R,) int64 -> (B, 75, h, w) logits."""
    coords = torch.nonzero(active)  # [M, 3]: (b, y, x), sorted
    b, y, x = coords.unbind(1)
    neighbours = _neighbour_rows(active, b, y, x)  # [M, 9]: row of cat([0, feats]), 0 = none
    if branch.norm == "image":
        region_masks, region_image = region_masks[:0], region_image[:0]
    regions = _SiteRegions(region_masks, region_image, b, y, x, active.shape[0])
    feats = x_agg.permute(0, 2, 3, 1)[b, y, x]  # [M, Cin]
    if branch.stem is not None:
        feats = _sub_block(branch.stem, feats, neighbours, regions)
    for block in branch.blocks:
        assert isinstance(block, SparseResidualBlock)
        out = feats + _sub_block(
            block.sub2, _sub_block(block.sub1, feats, neighbours, regions), neighbours, regions
        )
        feats = out if block.sub3 is None else _sub_block(block.sub3, out, neighbours, regions)
    logits = branch.predictor(feats)  # [M, 75]
    batch, height, width = active.shape
    dense = logits.new_zeros(batch, height, width, logits.shape[1])
    return dense.index_put((b, y, x), logits).permute(0, 3, 1, 2)


def _neighbour_rows(active: Tensor, b: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """(M, 9) int64: for each active site and 3x3 tap (ky * 3 + kx, as the conv weight's
    (k, k) order), 1 + the index of the neighbour's site, 0 where the neighbour is inactive."""
    batch, height, width = active.shape
    rows = torch.arange(1, b.shape[0] + 1, device=active.device)
    table = torch.zeros(batch, height + 2, width + 2, dtype=torch.int64, device=active.device)
    table = table.index_put((b, y + 1, x + 1), rows)
    taps = torch.arange(3, device=active.device)
    ky, kx = taps.repeat_interleave(3), taps.repeat(3)  # [9] each
    return table[b[:, None], y[:, None] + ky, x[:, None] + kx]


class _SiteRegions:
    """``model.network.ian.SiteRegions`` (R + B regions over the M sites) with the counts every
    IAN layer divides by, computed once."""

    def __init__(
        self,
        region_masks: Tensor,
        region_image: Tensor,
        b: Tensor,
        y: Tensor,
        x: Tensor,
        batch_size: int,
    ) -> None:
        covers = region_masks[:, y, x] & (region_image[:, None] == b)  # [R, M]
        region_of_pair, site_of_pair = torch.nonzero(covers).unbind(1)
        uncovered = torch.nonzero(~covers.any(dim=0))[:, 0]  # [M_rest]
        self.site_index = torch.cat([site_of_pair, uncovered])  # [P]
        self.region_index = torch.cat([region_of_pair, region_masks.shape[0] + b[uncovered]])
        self.num_regions = region_masks.shape[0] + batch_size
        ones = torch.ones_like(self.site_index, dtype=torch.float32)[:, None]
        count = segment_sum(self.region_index, ones, self.num_regions)
        self.count = count.clamp(min=1.0)  # [R + B, 1]
        multiplicity = segment_sum(self.site_index, ones, b.shape[0])
        self.multiplicity = multiplicity.clamp(min=1.0)  # [M, 1]

    def sum(self, values: Tensor) -> Tensor:
        """(P, C) values of the pairs -> (R + B, C) sums per region."""
        return segment_sum(self.region_index, values, self.num_regions)


def segment_sum(index: Tensor, values: Tensor, size: int) -> Tensor:
    """(P,) int64 rows in [0, size), (P, C) values -> (size, C): the sum of the values of each
    row. ``scatter_add`` (ONNX ScatterElements, reduction add), not ``index_add`` (ScatterND,
    reduction add), whose CPU kernel in ONNX Runtime adds repeated rows from several threads
    at once and loses some of the sums (microsoft/onnxruntime#18048)."""
    rows = index[:, None].expand(-1, values.shape[1])
    return values.new_zeros(size, values.shape[1]).scatter_add(0, rows, values)


def _instance_aware_norm(norm: InstanceAwareNorm, feats: Tensor, regions: _SiteRegions) -> Tensor:
    """``InstanceAwareNorm.forward`` on (M, C) features."""
    values = feats[regions.site_index]  # [P, C]
    mean = regions.sum(values) / regions.count  # [R + B, C]
    centred = values - mean[regions.region_index]
    var = regions.sum(centred * centred) / regions.count
    normed = centred * torch.rsqrt(var + norm.eps)[regions.region_index]  # [P, C]
    out = segment_sum(regions.site_index, normed, feats.shape[0])
    return out / regions.multiplicity * norm.weight + norm.bias


def _sub_block(
    block: SparseSubBlock, feats: Tensor, neighbours: Tensor, regions: _SiteRegions
) -> Tensor:
    """``SparseSubBlock.forward``: submanifold 3x3 conv as one gather and one GEMM, IAN, ReLU."""
    conv = block.conv
    padded = torch.cat([feats.new_zeros(1, feats.shape[1]), feats])  # [M + 1, Cin]
    weight = conv.weight.reshape(conv.out_channels, -1)  # [Cout, 9 * Cin], tap-major
    out = padded[neighbours].flatten(1) @ weight.t()  # [M, Cout]
    if conv.bias is not None:
        out = out + conv.bias
    return F.relu(_instance_aware_norm(block.norm, out, regions))
