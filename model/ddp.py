"""The Direct Dense Pose network (paper Fig. 2) and its builder.

``DDP.forward`` is inference on a padded, normalised batch and returns raw outputs
(``DDPOutput``); training composes the same stages in ``model.training``; turning outputs
into per-person results is ``model.postprocess``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.aggregation import FeatureAggregation
from model.backbone import PYRAMID_NAMES, PYRAMID_STRIDES, build_backbone
from model.config import DDPConfig, InstanceConfig
from model.detection import select_detections
from model.instance_branch import InstanceBranch
from model.iuv_branch import IUVBranch
from model.sparse import resolve_backend, set_backend
from model.structures import DDPOutput, Detections


class DDP(nn.Module):
    def __init__(
        self,
        *,
        backbone: nn.Module,
        aggregation: FeatureAggregation,
        instance_branch: InstanceBranch,
        iuv_branch: IUVBranch,
        detection: InstanceConfig,
        suppress_background: bool,
        region_dilation: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.aggregation = aggregation
        self.instance_branch = instance_branch
        self.iuv_branch = iuv_branch
        self.detection = detection
        self.suppress_background = suppress_background
        self.region_dilation = region_dilation

    def features(self, images: Tensor) -> tuple[OrderedDict[str, Tensor], Tensor]:
        """(B, 3, H, W) -> FPN levels p2..p5 and X_agg (B, C, H/4, W/4)."""
        pyramid = self.backbone(images)
        return pyramid, self.aggregation(pyramid)

    def instance_regions(self, mask_probabilities: Tensor) -> Tensor:
        """(N, h, w) mask probabilities (or GT coverage) -> (N, h, w) bool regions: above
        ``mask_threshold``, dilated by ``region_dilation`` cells."""
        regions = mask_probabilities > self.detection.mask_threshold
        if self.region_dilation == 0 or len(regions) == 0:
            return regions
        size = 2 * self.region_dilation + 1
        dilated = F.max_pool2d(
            regions[:, None].float(), size, stride=1, padding=self.region_dilation
        )
        return dilated[:, 0] > 0

    def foreground(self, instance_masks: Tensor, image_index: Tensor, batch_size: int) -> Tensor:
        """M_fg (B, h, w) bool: union of each image's instance masks (N, h, w) bool, or all
        ones without background suppression."""
        height, width = instance_masks.shape[-2:]
        if not self.suppress_background:
            return instance_masks.new_ones(batch_size, height, width)
        counts = instance_masks.new_zeros(batch_size, height, width, dtype=torch.int32)
        counts.index_add_(0, image_index, instance_masks.to(torch.int32))
        return counts > 0

    def forward(self, images: Tensor, image_sizes: Tensor) -> DDPOutput:
        """images (B, 3, H, W) normalised, H and W divisible by 32; image_sizes (B, 2) = the
        (height, width) of each image before padding."""
        pyramid, x_agg = self.features(images)
        branch = self.instance_branch
        head = branch.heads(pyramid)
        cfg = self.detection
        selected = select_detections(
            head,
            image_sizes,
            candidate_score_threshold=cfg.candidate_score_threshold,
            pre_nms_top_k=cfg.pre_nms_top_k,
            nms_iou_threshold=cfg.nms_iou_threshold,
            max_detections=cfg.max_detections,
            score_threshold=cfg.detection_score_threshold,
        )
        mask_logits = branch.masks(
            branch.mask_features(x_agg),
            selected.params,
            selected.centers_xy,
            selected.strides,
            selected.image_index,
        )  # [N, 2, H/4, W/4]
        regions = self.instance_regions(mask_logits[:, 0].sigmoid())
        active = self.foreground(regions, selected.image_index, images.shape[0])
        iuv_logits = self.iuv_branch(x_agg, active, regions, selected.image_index)
        detections = Detections(
            image_index=selected.image_index,
            boxes_xyxy=selected.boxes_xyxy,
            scores=selected.scores,
            mask_logits=mask_logits,
        )
        return DDPOutput(
            detections=detections, iuv_logits=iuv_logits, active=active, image_sizes=image_sizes
        )


def build_ddp(
    config: DDPConfig, *, device: torch.device | str = "cpu", load_pretrained: bool = True
) -> DDP:
    """The network of ``config`` on ``device``; the sparse backend resolved for that device.

    ``load_pretrained=False`` skips reading ImageNet backbone weights (a checkpoint follows).
    """
    device = torch.device(device)
    backend = resolve_backend(config.iuv.sparse_backend, device)
    backbone = build_backbone(
        config.backbone.name,
        fpn_channels=config.backbone.fpn_channels,
        pretrained=config.backbone.pretrained,
        load_pretrained=load_pretrained,
    )
    aggregation = FeatureAggregation(
        in_channels=config.backbone.fpn_channels,
        channels=config.aggregation.channels,
        level_names=PYRAMID_NAMES,
        level_strides=PYRAMID_STRIDES,
    )
    inst = config.instance
    instance_branch = InstanceBranch(
        fpn_channels=config.backbone.fpn_channels,
        agg_channels=config.aggregation.channels,
        strides=inst.fcos_strides,
        head_channels=inst.head_channels,
        head_convs=inst.head_convs,
        mask_feature_channels=inst.mask_feature_channels,
        mask_head_channels=inst.mask_head_channels,
        mask_head_layers=inst.mask_head_layers,
    )
    iuv_branch = IUVBranch(
        in_channels=config.aggregation.channels,
        channels=config.iuv.channels,
        num_blocks=config.iuv.num_blocks,
        norm=config.iuv.norm,
        backend=backend,
    )
    model = DDP(
        backbone=backbone,
        aggregation=aggregation,
        instance_branch=instance_branch,
        iuv_branch=iuv_branch,
        detection=inst,
        suppress_background=config.iuv.suppress_background,
        region_dilation=config.iuv.region_dilation,
    )
    return model.to(device)


def use_sparse_backend(model: DDP, name: str) -> str:
    """Switch the IUV branch's sparse backend (same weights); returns the resolved name."""
    device = next(model.parameters()).device
    backend = resolve_backend(name, device)
    set_backend(model.iuv_branch, backend)
    return backend
