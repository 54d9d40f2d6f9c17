"""The instance branch (paper section 3.3): CondInst on DDP's aggregated features.

FCOS heads run on the FPN levels P3.. (plus extra levels made from P5); the down-sample conv
turns X_agg (1/4) into X_D (1/8); the dynamic mask head turns X_D + relative coordinates into
M_ins and M_dp per instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from model.network.dynamic_mask_head import DynamicMaskHead
from model.network.fcos_head import ExtraLevels, FcosHead, FcosHeadOutput
from model.network.layers import conv_gn_relu

MASK_FEATURE_STRIDE = 8
SIZE_OF_INTEREST_PER_STRIDE = 8
"""CondInst normalises relative coordinates by 64, 128, ... for strides 8, 16, ...: 8 x stride."""


class DownSampleConv(nn.Module):
    """Three stride-1 convs, one stride-2 conv: X_agg (B, Cin, H/4, W/4) -> X_D (B, C, H/8, W/8)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*(conv_gn_relu(in_channels, in_channels) for _ in range(3)))
        self.down = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x_agg: Tensor) -> Tensor:
        return self.down(self.convs(x_agg))


class InstanceBranch(nn.Module):
    def __init__(
        self,
        *,
        fpn_channels: int,
        agg_channels: int,
        strides: Sequence[int],
        head_channels: int,
        head_convs: int,
        mask_feature_channels: int,
        mask_head_channels: int,
        mask_head_layers: int,
    ) -> None:
        super().__init__()
        if list(strides[: min(3, len(strides))]) != [8, 16, 32][: len(strides)]:
            raise ValueError(f"FCOS strides must start 8, 16, 32; got {tuple(strides)}")
        self.strides = tuple(strides)
        self.extra_levels = ExtraLevels(fpn_channels, count=sum(s > 32 for s in strides))
        self.mask_head = DynamicMaskHead(
            in_channels=mask_feature_channels,
            channels=mask_head_channels,
            num_layers=mask_head_layers,
            in_stride=MASK_FEATURE_STRIDE,
        )
        self.head = FcosHead(
            in_channels=fpn_channels,
            channels=head_channels,
            num_convs=head_convs,
            num_params=self.mask_head.num_params,
        )
        self.downsample = DownSampleConv(agg_channels, mask_feature_channels)

    def heads(self, pyramid: Mapping[str, Tensor]) -> FcosHeadOutput:
        """FPN levels {p3, p4, p5: (B, C, H/s, W/s)} -> raw FCOS outputs on all head levels."""
        base = [pyramid[name] for name in ("p3", "p4", "p5")][: len(self.strides)]
        levels = base + self.extra_levels(pyramid["p5"])
        return self.head(levels, self.strides)

    def mask_features(self, x_agg: Tensor) -> Tensor:
        """X_agg (B, C, H/4, W/4) -> X_D (B, C_D, H/8, W/8)."""
        return self.downsample(x_agg)

    def masks(
        self,
        mask_features: Tensor,
        params: Tensor,
        centers_xy: Tensor,
        strides: Tensor,
        image_index: Tensor,
    ) -> Tensor:
        """Mask logits (N, 2, H/4, W/4) of N instances given their FCOS location and stride."""
        sizes_of_interest = strides * SIZE_OF_INTEREST_PER_STRIDE
        return self.mask_head(mask_features, params, centers_xy, sizes_of_interest, image_index)
