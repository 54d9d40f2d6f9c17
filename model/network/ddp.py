"""The Direct Dense Pose network (paper Fig. 2) and its builder.

The network is walked in two steps that inference and training share: ``DDP.features`` (the
per-location stages: backbone, FPN, X_agg, FCOS heads), then, once the instances are chosen,
``DDP.dense_pose`` (dynamic mask heads, instance regions, M_fg, IUV branch). ``DDP.forward``
chooses the instances by detection and returns raw outputs (``DDPOutput``);
``model.training.objective`` chooses them from the ground truth; turning outputs into
per-person results is ``model.inference.postprocess``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import DDPConfig, InstanceConfig
from model.network.aggregation import FeatureAggregation
from model.network.backbone import PYRAMID_NAMES, PYRAMID_STRIDES, build_backbone
from model.network.detection import select_detections, suppress_duplicate_masks
from model.network.fcos_head import FcosHeadOutput
from model.network.instance_branch import InstanceBranch
from model.network.iuv_branch import IUVBranch
from model.network.sparse import resolve_backend, set_backend
from model.structures import DDPOutput, Detections


@dataclass
class InstanceLocations:
    """The N FCOS locations of a batch whose dynamic mask heads run: the detections at
    inference, sampled FCOS positives in training.

    Attributes:
        params: (N, P) dynamic mask-head parameters (the controller's output there).
        centers_xy: (N, 2) float32, the locations (x, y) in input pixels.
        strides: (N,) float32, strides of their FCOS levels.
        image_index: (N,) int64, which image of the batch each instance is in.
        scores: (N,) float32 detection scores at inference (mask NMS ranks by them); None in
            training.
    """

    params: Tensor
    centers_xy: Tensor
    strides: Tensor
    image_index: Tensor
    scores: Tensor | None = None


@dataclass
class InstanceCoverage:
    """What places the IAN instance regions and M_fg: soft instance masks at 1/4 scale.

    Attributes:
        fractions: (N, H/4, W/4) float in [0, 1], the M_ins probabilities of the detections
            (inference) or the fraction of each cell a ground-truth mask covers (training).
        image_index: (N,) int64, which image of the batch each instance is in.
    """

    fractions: Tensor
    image_index: Tensor


@dataclass
class DensePoseMaps:
    """Output of ``DDP.dense_pose``, all at 1/4 of the padded input.

    Attributes:
        mask_logits: (N, 2, H/4, W/4) float32, one per ``InstanceLocations`` instance;
            channel 0 = M_ins, 1 = M_dp (logits).
        regions: (N', H/4, W/4) bool, IAN instance regions, one per ``InstanceCoverage``
            instance (N' = N at inference, the ground-truth persons in training).
        active: (B, H/4, W/4) bool, M_fg: the sites the IUV branch computed.
        iuv_logits: (B, 3K, H/4, W/4) float32, K part logits, K U, K V; zero outside ``active``.
    """

    mask_logits: Tensor
    regions: Tensor
    active: Tensor
    iuv_logits: Tensor
    kept: Tensor | None = None
    """(N,) int64 indices of the instances that survived mask NMS (inference; ``mask_logits``
    and ``regions`` hold only those), None when every instance was kept as given."""
    kept_scores: Tensor | None = None
    """(N,) their scores after mask NMS (decayed by Matrix NMS)."""


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

    def features(self, images: Tensor) -> tuple[Tensor, FcosHeadOutput]:
        """images (B, 3, H, W) -> X_agg (B, C, H/4, W/4) and the raw FCOS outputs of every
        location (L in all, over the head levels): the stages before instances are chosen."""
        pyramid = self.backbone(images)
        x_agg = self.aggregation(pyramid)
        return x_agg, self.instance_branch.heads(pyramid)

    def dense_pose(
        self,
        x_agg: Tensor,
        instances: InstanceLocations,
        *,
        coverage: InstanceCoverage | None = None,
    ) -> DensePoseMaps:
        """The stages after instances are chosen, on X_agg (B, C, H/4, W/4).

        The dynamic mask heads run at ``instances`` (N); the instance regions and M_fg come
        from ``coverage`` (N' instances), by default the M_ins probabilities of those same
        mask heads (inference); the IUV branch then runs on M_fg with IAN over the regions.
        """
        branch = self.instance_branch
        mask_logits = branch.masks(
            branch.mask_features(x_agg),
            instances.params,
            instances.centers_xy,
            instances.strides,
            instances.image_index,
        )  # [N, 2, H/4, W/4]
        kept = kept_scores = None
        if coverage is None:
            probabilities = mask_logits[:, 0].sigmoid()
            image_index = instances.image_index
            if self.detection.mask_nms != "none" and instances.scores is not None:
                kept, kept_scores = self.suppress_duplicates(
                    probabilities, instances.scores, image_index
                )
                mask_logits, probabilities = mask_logits[kept], probabilities[kept]
                image_index = image_index[kept]
            coverage = InstanceCoverage(fractions=probabilities, image_index=image_index)
        regions = self.instance_regions(coverage.fractions)  # [N', H/4, W/4]
        active = self.foreground(regions, coverage.image_index, x_agg.shape[0])  # [B, H/4, W/4]
        iuv_logits = self.iuv_branch(x_agg, active, regions, coverage.image_index)
        return DensePoseMaps(
            mask_logits=mask_logits,
            regions=regions,
            active=active,
            iuv_logits=iuv_logits,
            kept=kept,
            kept_scores=kept_scores,
        )

    def suppress_duplicates(
        self, mask_probabilities: Tensor, scores: Tensor, image_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Mask NMS of the config (``InstanceConfig.mask_nms``) on (N, H/4, W/4) M_ins
        probabilities: (K,) kept indices and their (K,) scores."""
        cfg = self.detection
        return suppress_duplicate_masks(
            mask_probabilities,
            scores,
            image_index,
            method=cfg.mask_nms,
            threshold=cfg.mask_nms_threshold,
            sigma=cfg.mask_nms_sigma,
            score_threshold=cfg.detection_score_threshold,
        )

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
        x_agg, head = self.features(images)
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
        maps = self.dense_pose(
            x_agg,
            InstanceLocations(
                params=selected.params,
                centers_xy=selected.centers_xy,
                strides=selected.strides,
                image_index=selected.image_index,
                scores=selected.scores,
            ),
        )
        image_index, boxes, scores = selected.image_index, selected.boxes_xyxy, selected.scores
        if maps.kept is not None and maps.kept_scores is not None:
            image_index, boxes, scores = image_index[maps.kept], boxes[maps.kept], maps.kept_scores
        detections = Detections(
            image_index=image_index,
            boxes_xyxy=boxes,
            scores=scores,
            mask_logits=maps.mask_logits,
        )
        return DDPOutput(
            detections=detections,
            iuv_logits=maps.iuv_logits,
            active=maps.active,
            image_sizes=image_sizes,
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
        frozen_stages=config.backbone.frozen_stages,
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
