"""FCOS heads of the instance branch (CondInst): classification, centerness, box, controller.

One head shared by all levels. The box tower carries box regression, centerness and the
controller that generates each location's dynamic mask-head parameters (theta_{h,w}).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.network.layers import conv_gn_relu


def fcos_locations(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    device: torch.device | str,
) -> list[Tensor]:
    """Pixel position of every feature-map location, one tensor per level.

    Args:
        feature_sizes: (h_l, w_l) of each level.
        strides: stride s_l of each level, in input pixels.
        device: where the locations are created.

    Returns:
        Per level a (h_l * w_l, 2) float32 tensor of (x, y) = (j * s + s // 2, i * s + s // 2)
        for location (i, j), rows in row-major order.
    """
    if len(feature_sizes) != len(strides):
        raise ValueError(
            f"expected one stride per level, got {len(feature_sizes)} feature sizes "
            f"and {len(strides)} strides"
        )
    locations = []
    for (height, width), stride in zip(feature_sizes, strides, strict=True):
        xs = torch.arange(width, dtype=torch.float32, device=device) * stride + stride // 2
        ys = torch.arange(height, dtype=torch.float32, device=device) * stride + stride // 2
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # [h, w] each
        locations.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
    return locations


@dataclass
class FcosHeadOutput:
    """Raw head outputs of a batch, levels concatenated (L locations in all).

    Attributes:
        cls_logits: (B, L) person logits.
        box_ltrb: (B, L, 4) distances (left, top, right, bottom) in input pixels, >= 0.
        centerness_logits: (B, L).
        controller: (B, L, P) dynamic mask-head parameters.
        locations: (L, 2) float32 (x, y) of each location in input pixels.
        location_strides: (L,) float32, stride of each location's level.
    """

    cls_logits: Tensor
    box_ltrb: Tensor
    centerness_logits: Tensor
    controller: Tensor
    locations: Tensor
    location_strides: Tensor


class ExtraLevels(nn.Module):
    """Levels beyond P5 (e.g. P6, P7): 3x3 stride-2 convs, ReLU between (as FCOS/RetinaNet)."""

    def __init__(self, channels: int, count: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(count)
        )

    def forward(self, p5: Tensor) -> list[Tensor]:
        levels = []
        x = p5
        for index, conv in enumerate(self.convs):
            x = conv(x if index == 0 else F.relu(x))
            levels.append(x)
        return levels


class FcosHead(nn.Module):
    """``forward(levels: list of (B, C, H_l, W_l), strides) -> FcosHeadOutput``."""

    def __init__(
        self,
        *,
        in_channels: int,
        channels: int,
        num_convs: int,
        num_params: int,
        prior_probability: float = 0.01,
    ) -> None:
        super().__init__()
        self.cls_tower = _tower(in_channels, channels, num_convs)
        self.box_tower = _tower(in_channels, channels, num_convs)
        self.cls_logits = nn.Conv2d(channels, 1, 3, padding=1)
        self.box_ltrb = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.controller = nn.Conv2d(channels, num_params, 3, padding=1)
        for layer in (self.cls_logits, self.box_ltrb, self.centerness, self.controller):
            nn.init.normal_(layer.weight, std=0.01)
        # Boxes start one stride from the location on every side, not at zero size: behind
        # the ReLU a zero-size box gets a GIoU loss of exactly 1 and almost no gradient.
        nn.init.constant_(self.box_ltrb.bias, 1.0)  # type: ignore[arg-type]
        nn.init.zeros_(self.centerness.bias)  # type: ignore[arg-type]
        nn.init.zeros_(self.controller.bias)  # type: ignore[arg-type]
        prior_logit = -math.log((1 - prior_probability) / prior_probability)
        nn.init.constant_(self.cls_logits.bias, prior_logit)  # type: ignore[arg-type]

    def forward(self, levels: Sequence[Tensor], strides: Sequence[int]) -> FcosHeadOutput:
        outputs: dict[str, list[Tensor]] = {"cls": [], "box": [], "ctr": [], "params": []}
        for x, stride in zip(levels, strides, strict=True):
            cls_features = self.cls_tower(x)
            box_features = self.box_tower(x)
            outputs["cls"].append(_flatten(self.cls_logits(cls_features)))  # [B, HW, 1]
            outputs["box"].append(_flatten(F.relu(self.box_ltrb(box_features)) * stride))
            outputs["ctr"].append(_flatten(self.centerness(box_features)))
            outputs["params"].append(_flatten(self.controller(box_features)))  # [B, HW, P]
        sizes = [(int(x.shape[-2]), int(x.shape[-1])) for x in levels]
        locations = fcos_locations(sizes, strides, device=levels[0].device)
        location_strides = torch.cat(
            [
                torch.full((len(loc),), float(stride), device=loc.device)
                for loc, stride in zip(locations, strides, strict=True)
            ]
        )
        return FcosHeadOutput(
            cls_logits=torch.cat(outputs["cls"], dim=1).squeeze(-1),
            box_ltrb=torch.cat(outputs["box"], dim=1),
            centerness_logits=torch.cat(outputs["ctr"], dim=1).squeeze(-1),
            controller=torch.cat(outputs["params"], dim=1),
            locations=torch.cat(locations),
            location_strides=location_strides,
        )


def _tower(in_channels: int, channels: int, num_convs: int) -> nn.Sequential:
    layers = [conv_gn_relu(in_channels if i == 0 else channels, channels) for i in range(num_convs)]
    return nn.Sequential(*layers)


def _flatten(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, H*W, C), row-major over (H, W)."""
    return x.flatten(2).transpose(1, 2)
