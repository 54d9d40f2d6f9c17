"""Feature aggregation (paper section 3.2, after Panoptic FPN's semantic branch).

Each FPN level is brought to 1/4 scale by repeated (3x3 conv + GN + ReLU + 2x bilinear
upsampling) and the levels are summed into X_agg.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from model.network.layers import conv_gn_relu


class _ScaleUp(nn.Module):
    """(B, Cin, H, W) -> (B, C, H * 2^steps, W * 2^steps)."""

    def __init__(self, in_channels: int, channels: int, steps: int) -> None:
        super().__init__()
        convs = [conv_gn_relu(in_channels, channels)]
        convs += [conv_gn_relu(channels, channels) for _ in range(max(steps - 1, 0))]
        self.convs = nn.ModuleList(convs)
        self.steps = steps

    def forward(self, x: Tensor) -> Tensor:
        for index, conv in enumerate(self.convs):
            x = conv(x)
            if index < self.steps:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return x


class FeatureAggregation(nn.Module):
    """``forward(pyramid: {name: (B, Cin, H/s, W/s)}) -> X_agg (B, C, H/4, W/4)``."""

    def __init__(
        self,
        *,
        in_channels: int,
        channels: int,
        level_names: Sequence[str],
        level_strides: Sequence[int],
        out_stride: int = 4,
    ) -> None:
        super().__init__()
        self.level_names = list(level_names)
        self.branches = nn.ModuleList(
            _ScaleUp(in_channels, channels, int(math.log2(stride // out_stride)))
            for stride in level_strides
        )
        self.out_channels = channels

    def forward(self, pyramid: Mapping[str, Tensor]) -> Tensor:
        branches = zip(self.level_names, self.branches, strict=True)
        return sum(branch(pyramid[name]) for name, branch in branches)
