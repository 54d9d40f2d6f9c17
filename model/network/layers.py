"""Small building blocks shared by the network's parts."""

from __future__ import annotations

from torch import nn


def conv_gn_relu(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias) + GroupNorm + ReLU: (B, Cin, H, W) -> (B, Cout, H/stride, W/stride)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(_groups(out_channels), out_channels),
        nn.ReLU(inplace=True),
    )


def _groups(channels: int) -> int:
    """The largest of 32, 16, 8, 4, 2, 1 that divides ``channels`` with >= 4 channels a group."""
    for groups in (32, 16, 8, 4, 2):
        if channels % groups == 0 and channels // groups >= 4:
            return groups
    return 1
