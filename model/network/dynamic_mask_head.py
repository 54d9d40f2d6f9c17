"""The dynamic mask FCN head of CondInst, emitting two maps per instance: M_ins and M_dp.

Each instance n has its own parameter vector theta_n (P numbers from the controller). The
head is a stack of 1x1 convs whose weights and biases are cut out of theta_n; all instances
run at once as one grouped convolution (groups = N). Its input is X_D (at 1/8 scale) with two
extra channels: the coordinates of every X_D location relative to the instance's location,
divided by the instance's "size of interest" (8 x its level's stride, as in CondInst).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_MASK_OUTPUTS = 2
"""M_ins (instance mask) and M_dp (dense-pose mask)."""


def layer_shapes(
    in_channels: int, channels: int, num_layers: int, out_channels: int = NUM_MASK_OUTPUTS
) -> list[tuple[int, int]]:
    """(in, out) channels of each 1x1 layer of the dynamic head; input includes the 2 coords."""
    widths = [in_channels + 2] + [channels] * (num_layers - 1) + [out_channels]
    return list(itertools.pairwise(widths))


def num_dynamic_params(shapes: list[tuple[int, int]]) -> int:
    """P: all weights, then all biases, of the layers."""
    return sum(cin * cout + cout for cin, cout in shapes)


def split_params(
    params: Tensor, shapes: list[tuple[int, int]]
) -> tuple[list[Tensor], list[Tensor]]:
    """(N, P) -> per layer weights (N*Cout, Cin, 1, 1) and biases (N*Cout,), grouped-conv layout."""
    num = params.shape[0]
    sizes = [cin * cout for cin, cout in shapes] + [cout for _, cout in shapes]
    pieces = torch.split(params, sizes, dim=1)
    weights = [
        piece.reshape(num * cout, cin, 1, 1)
        for piece, (cin, cout) in zip(pieces[: len(shapes)], shapes, strict=True)
    ]
    biases = [
        piece.reshape(num * cout)
        for piece, (_, cout) in zip(pieces[len(shapes) :], shapes, strict=True)
    ]
    return weights, biases


def relative_coordinates(
    centers_xy: Tensor, sizes_of_interest: Tensor, *, height: int, width: int, stride: int
) -> Tensor:
    """(N, 2) instance locations (input px), (N,) scales -> (N, 2, H, W) of the X_D grid.

    X_D location (i, j) sits at input pixel (j * stride + stride // 2, i * stride + stride // 2);
    channel 0 is (instance x - location x) / soi, channel 1 the same for y.
    """
    device = centers_xy.device
    ys = torch.arange(height, device=device, dtype=torch.float32) * stride + stride // 2
    xs = torch.arange(width, device=device, dtype=torch.float32) * stride + stride // 2
    dx = centers_xy[:, 0, None, None] - xs[None, None, :]  # [N, 1, W]
    dy = centers_xy[:, 1, None, None] - ys[None, :, None]  # [N, H, 1]
    scale = sizes_of_interest[:, None, None]
    return torch.stack([(dx / scale).expand(-1, height, -1), (dy / scale).expand(-1, -1, width)], 1)


class DynamicMaskHead(nn.Module):
    """``forward(mask_features (B, C, h, w), params (N, P), centers_xy (N, 2), soi (N,),
    image_index (N,)) -> mask logits (N, 2, 2h, 2w)`` (1/8 -> 1/4 scale; 0 = M_ins, 1 = M_dp).

    Has no parameters of its own: all weights come from ``params``.
    """

    def __init__(self, *, in_channels: int, channels: int, num_layers: int, in_stride: int) -> None:
        super().__init__()
        self.shapes = layer_shapes(in_channels, channels, num_layers)
        self.num_params = num_dynamic_params(self.shapes)
        self.in_stride = in_stride

    def forward(
        self,
        mask_features: Tensor,
        params: Tensor,
        centers_xy: Tensor,
        sizes_of_interest: Tensor,
        image_index: Tensor,
    ) -> Tensor:
        num, height, width = params.shape[0], mask_features.shape[-2], mask_features.shape[-1]
        if num == 0:
            return mask_features.new_zeros(0, NUM_MASK_OUTPUTS, 2 * height, 2 * width)
        coords = relative_coordinates(
            centers_xy, sizes_of_interest, height=height, width=width, stride=self.in_stride
        )
        x = torch.cat([mask_features[image_index], coords.to(mask_features.dtype)], dim=1)
        x = x.reshape(1, -1, height, width)  # [1, N*(C+2), h, w]
        weights, biases = split_params(params, self.shapes)
        for index, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
            x = F.conv2d(x, weight, bias, groups=num)
            if index < len(weights) - 1:
                x = F.relu(x)
        logits = x.reshape(num, NUM_MASK_OUTPUTS, height, width)
        return F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False)
