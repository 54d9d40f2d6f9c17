"""A top-down reference for timing only: DensePose R-CNN's shape on DDP's own backbone.

Paper Fig. 4 compares DDP's inference time with a top-down method whose cost grows with the
number of persons. This module builds such a network with random weights (its accuracy is
never looked at) so that ``benchmarks.persons`` can time both on the same images:

* **backbone + FPN**: DDP's, from the DDP config (``model.network.backbone.build_backbone``):
  P2..P5 with ``fpn_channels`` channels (64 in the default config, 256 in r50), plus P6 =
  max-pool of P5 for the RPN (as Faster R-CNN's FPN);
* **box stage** (Faster R-CNN, detectron2's test settings): an RPN on P2..P6 (3x3 conv,
  3 anchors per location: sizes 32..512, ratios 0.5, 1, 2), ``rpn_pre_nms_top_k`` = 1000 per
  level, NMS 0.7, ``proposals`` = 1000 kept; the box head on them: RoIAlign 7x7 (sampling
  2) from P2..P5, two FC layers of 1024, person / background scores and box deltas,
  score > 0.05, NMS 0.5, at most 100 detections. Its detections are computed and dropped:
  the heads run on N *forced* boxes, so N is exactly what the caller asks for;
* **mask head** (Mask R-CNN): RoIAlign 14x14 from P2..P5, 4 conv 3x3 of 256 + ReLU, deconv
  2x2 stride 2 (256) + ReLU, 1x1 conv to 2 classes: the person channel is (N, 1, 28, 28);
* **DensePose head** (detectron2's ``DensePoseV1ConvXHead`` + ``DensePoseChartPredictor``):
  RoIAlign ``densepose_pool`` x ``densepose_pool`` (14 by default, Detectron's DensePose
  R-CNN; detectron2's default is 28, which quadruples the head's cost) from P2..P5, 8 conv
  3x3 of 512 + ReLU, one deconv 4x4 stride 2 to 77 channels (2 coarse segmentation + 25 I +
  25 U + 25 V; detectron2 uses four deconvs of 2 + 25 + 25 + 25 channels, the same work) at
  28x28, bilinear x2 to 56x56;
* **paste** (:func:`to_results`, the post-processing DDP also does): each mask pasted into
  the whole image (torchvision's ``paste_masks_in_image``, Mask R-CNN's), and each person's
  77 channels resampled bilinearly to its integer box in image pixels, then the same
  ``charts_from_logits`` as DDP (part where coarse foreground > background).

:func:`build_topdown` reads the DDP config (backbone, input size) and a :class:`TopDownConfig`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, paste_masks_in_image
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign

from model.config import NUM_IUV_LOGITS, DDPConfig, InputConfig
from model.inference.postprocess import charts_from_logits
from model.inference.preprocess import PreparedBatch, image_to_tensor, prepare_batch
from model.network.backbone import PYRAMID_NAMES, build_backbone
from model.structures import DensePoseResult, integer_boxes

COARSE_CHANNELS = 2
"""DensePose R-CNN's coarse segmentation: background, person."""
DENSEPOSE_CHANNELS = COARSE_CHANNELS + NUM_IUV_LOGITS
"""77 = 2 coarse + 25 I + 25 U + 25 V."""
ANCHOR_SIZES = (32, 64, 128, 256, 512)
"""One anchor size per RPN level P2..P6."""
ASPECT_RATIOS = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class TopDownConfig:
    """Sizes of the reference's stages (defaults: detectron2's DensePose R-CNN test settings,
    except ``densepose_pool``, see the module docstring)."""

    rpn_pre_nms_top_k: int = 1000
    """Proposals per level before NMS."""
    proposals: int = 1000
    """Proposals per image after NMS: the box head's RoIs."""
    box_pool: int = 7
    box_fc: int = 1024
    detections: int = 100
    mask_pool: int = 14
    mask_convs: int = 4
    mask_channels: int = 256
    densepose_pool: int = 14
    densepose_convs: int = 8
    densepose_channels: int = 512
    densepose_upscale: int = 2
    """Bilinear upsampling after the deconv: 14 -> 28 (deconv) -> 56."""

    @property
    def mask_size(self) -> int:
        return 2 * self.mask_pool

    @property
    def densepose_size(self) -> int:
        return 2 * self.densepose_pool * self.densepose_upscale


@dataclass
class TopDownOutput:
    """Raw output for a batch, persons flattened over images (N in all).

    Attributes:
        image_index: (N,) int64, which image each forced box belongs to.
        boxes_xyxy: (N, 4) float32, the forced boxes in padded-input pixels.
        mask_logits: (N, 1, 2P_m, 2P_m) float32, Mask R-CNN's person mask (P_m = mask_pool).
        densepose_logits: (N, 77, S, S) float32, S = 2 * densepose_pool * upscale: 2 coarse
            segmentation, 25 I, 25 U, 25 V logits over each box.
        box_detections: per image, how many detections the (random) box stage produced.
    """

    image_index: Tensor
    boxes_xyxy: Tensor
    mask_logits: Tensor
    densepose_logits: Tensor
    box_detections: list[int]


class BoxStage(nn.Module):
    """Faster R-CNN's RPN + box head: ``forward(images (B, 3, H, W), pyramid p2..p6,
    image_sizes (B, 2)) -> number of detections per image`` (the boxes themselves are not
    used by the reference)."""

    def __init__(self, *, channels: int, config: TopDownConfig) -> None:
        super().__init__()
        anchors = AnchorGenerator(
            sizes=tuple((size,) for size in ANCHOR_SIZES),
            aspect_ratios=(ASPECT_RATIOS,) * len(ANCHOR_SIZES),
        )
        top_k = {"training": config.rpn_pre_nms_top_k, "testing": config.rpn_pre_nms_top_k}
        kept = {"training": config.proposals, "testing": config.proposals}
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(channels, len(ASPECT_RATIOS)), fg_iou_thresh=0.7,
            bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
            pre_nms_top_n=top_k, post_nms_top_n=kept, nms_thresh=0.7,
        )  # fmt: skip
        pool = config.box_pool
        self.roi_heads = RoIHeads(
            MultiScaleRoIAlign(list(PYRAMID_NAMES), pool, sampling_ratio=2),
            TwoMLPHead(channels * pool * pool, config.box_fc),
            FastRCNNPredictor(config.box_fc, 2), fg_iou_thresh=0.5, bg_iou_thresh=0.5,
            batch_size_per_image=512, positive_fraction=0.25, bbox_reg_weights=None,
            score_thresh=0.05, nms_thresh=0.5, detections_per_img=config.detections,
        )  # fmt: skip

    def forward(
        self, images: Tensor, pyramid: OrderedDict[str, Tensor], image_sizes: Tensor
    ) -> list[int]:
        sizes = [(int(h), int(w)) for h, w in image_sizes.tolist()]
        proposals, _ = self.rpn(ImageList(images, sizes), pyramid)  # B x [1000, 4]
        box_levels = OrderedDict((name, pyramid[name]) for name in PYRAMID_NAMES)
        detections, _ = self.roi_heads(box_levels, proposals, sizes)
        return [len(found["boxes"]) for found in detections]


class RoIHead(nn.Module):
    """RoIAlign from P2..P5 + layers: ``forward(pyramid, boxes: B x (N_b, 4) padded-input
    pixels, image_shape (H, W)) -> (N, C_out, S, S)``, N = all boxes in order."""

    def __init__(self, *, pool: int, layers: nn.Module) -> None:
        super().__init__()
        self.pooler = MultiScaleRoIAlign(list(PYRAMID_NAMES), pool, sampling_ratio=2)
        self.layers = layers

    def forward(
        self, pyramid: OrderedDict[str, Tensor], boxes: list[Tensor], image_shape: tuple[int, int]
    ) -> Tensor:
        pooled = self.pooler(pyramid, boxes, [image_shape] * len(boxes))  # [N, C, pool, pool]
        return self.layers(pooled)


class MaskLayers(nn.Module):
    """Mask R-CNN: (N, C, P, P) -> 4 conv 3x3 + ReLU, deconv x2 + ReLU, 1x1 -> (N, 1, 2P, 2P)
    (the person class of two)."""

    def __init__(self, *, in_channels: int, config: TopDownConfig) -> None:
        super().__init__()
        layers = (config.mask_channels,) * config.mask_convs
        self.convs = MaskRCNNHeads(in_channels, layers, dilation=1)
        self.predictor = MaskRCNNPredictor(config.mask_channels, config.mask_channels, 2)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.predictor(self.convs(pooled))[:, 1:]


class DensePoseLayers(nn.Module):
    """DensePoseV1ConvXHead + chart predictor: (N, C, P, P) -> 8 conv 3x3 (512) + ReLU ->
    deconv 4x4 stride 2 -> (N, 77, 2P, 2P) -> bilinear x upscale -> (N, 77, S, S)."""

    def __init__(self, *, in_channels: int, config: TopDownConfig) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        channels = in_channels
        for _ in range(config.densepose_convs):
            convs += [nn.Conv2d(channels, config.densepose_channels, 3, padding=1), nn.ReLU()]
            channels = config.densepose_channels
        self.convs = nn.Sequential(*convs)
        self.deconv = nn.ConvTranspose2d(channels, DENSEPOSE_CHANNELS, 4, stride=2, padding=1)
        self.upscale = config.densepose_upscale

    def forward(self, pooled: Tensor) -> Tensor:
        logits = self.deconv(self.convs(pooled))  # [N, 77, 2P, 2P]
        return F.interpolate(
            logits, scale_factor=self.upscale, mode="bilinear", align_corners=False
        )


class TopDownReference(nn.Module):
    """``forward(images (B, 3, H, W), boxes_per_image: B x (N_b, 4), image_sizes (B, 2))
    -> TopDownOutput``; boxes in padded-input pixels, ``image_sizes`` the unpadded
    (height, width) of each image (the box stage clips to them)."""

    def __init__(self, *, backbone: nn.Module, channels: int, config: TopDownConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.box_stage = BoxStage(channels=channels, config=config)
        self.mask_head = RoIHead(
            pool=config.mask_pool, layers=MaskLayers(in_channels=channels, config=config)
        )
        self.densepose_head = RoIHead(
            pool=config.densepose_pool,
            layers=DensePoseLayers(in_channels=channels, config=config),
        )

    def forward(
        self, images: Tensor, boxes_per_image: Sequence[Tensor], image_sizes: Tensor
    ) -> TopDownOutput:
        if len(boxes_per_image) != images.shape[0]:
            raise ValueError(
                f"need one box tensor per image: {images.shape[0]} images, "
                f"{len(boxes_per_image)} box tensors"
            )
        pyramid = self.backbone(images)
        pyramid["p6"] = F.max_pool2d(pyramid["p5"], kernel_size=1, stride=2)
        found = self.box_stage(images, pyramid, image_sizes)
        boxes = [b.to(images.device, torch.float32).reshape(-1, 4) for b in boxes_per_image]
        shape = (images.shape[-2], images.shape[-1])
        return TopDownOutput(
            image_index=torch.cat(
                [torch.full((len(b),), i, dtype=torch.int64) for i, b in enumerate(boxes)]
            ),
            boxes_xyxy=torch.cat(boxes),
            mask_logits=self.mask_head(pyramid, boxes, shape),
            densepose_logits=self.densepose_head(pyramid, boxes, shape),
            box_detections=found,
        )


def build_topdown(config: DDPConfig, topdown: TopDownConfig | None = None) -> TopDownReference:
    """The reference on ``config``'s backbone and FPN, random weights (ImageNet weights of the
    backbone are not read: timing does not depend on them)."""
    backbone = build_backbone(
        config.backbone.name,
        fpn_channels=config.backbone.fpn_channels,
        pretrained=config.backbone.pretrained,
        load_pretrained=False,
    )
    return TopDownReference(
        backbone=backbone, channels=config.backbone.fpn_channels, config=topdown or TopDownConfig()
    ).eval()


def _image_results(
    output: TopDownOutput, b: int, height: int, width: int, scale: float, mask_threshold: float
) -> DensePoseResult:
    mine = output.image_index == b
    if not bool(mine.any()):
        return DensePoseResult.empty(height, width)
    boxes = output.boxes_xyxy[mine] / scale
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    masks = paste_masks_in_image(output.mask_logits[mine].sigmoid(), boxes, (height, width))
    logits = output.densepose_logits[mine]
    parts, uv = [], []
    for i, (x0, y0, x1, y1) in enumerate(integer_boxes(boxes, height, width).tolist()):
        crop = F.interpolate(
            logits[i : i + 1], size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False
        )[0]  # [77, h, w]
        foreground = crop[1] - crop[0]  # > 0 where the coarse segmentation says person
        person_parts, person_uv = charts_from_logits(
            crop[COARSE_CHANNELS:], foreground, mask_threshold=0.5
        )
        parts.append(person_parts)
        uv.append(person_uv)
    return DensePoseResult(
        boxes_xyxy=boxes,
        scores=torch.ones(len(boxes)),
        masks=masks[:, 0] > mask_threshold,
        parts=parts,
        uv=uv,
    )


def to_results(
    output: TopDownOutput, batch: PreparedBatch, *, mask_threshold: float
) -> list[DensePoseResult]:
    """One ``DensePoseResult`` per image, in the images' own pixels (forced boxes score 1)."""
    return [
        _image_results(
            output, b, int(batch.original_sizes[b, 0]), int(batch.original_sizes[b, 1]),
            float(batch.scales[b]), mask_threshold,
        )
        for b in range(batch.images.shape[0])
    ]  # fmt: skip


@dataclass
class TopDownPredictor:
    """Images and their person boxes -> ``DensePoseResult``s, the way ``Predictor`` runs DDP:
    the same preprocessing, ``inference_mode``, the reference, :func:`to_results`.

    ``__call__(images: B x (H, W, 3) uint8 RGB, boxes_xyxy: B x (N_b, 4) in image pixels)``;
    ``mask_threshold``: DDP's (``InstanceConfig.mask_threshold``), so both paste masks alike.
    """

    model: TopDownReference
    input: InputConfig
    mask_threshold: float

    def __call__(
        self, images_rgb: Sequence[np.ndarray], boxes_xyxy: Sequence[Tensor]
    ) -> list[DensePoseResult]:
        batch = prepare_batch([image_to_tensor(image) for image in images_rgb], self.input)
        boxes = [b.float() * scale for b, scale in zip(boxes_xyxy, batch.scales, strict=True)]
        with torch.inference_mode():
            output = self.model(batch.images, boxes, batch.image_sizes)
        return to_results(output, batch, mask_threshold=self.mask_threshold)
