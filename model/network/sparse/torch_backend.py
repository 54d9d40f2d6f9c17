"""Submanifold convolution in plain PyTorch: per tap, gather the neighbours and accumulate a GEMM.

Works on any device and with autograd; it is the CPU path (see ``model.network.sparse.conv`` for the
timings). Accumulating tap by tap keeps the gathered block (M, C_in) small enough to stay in
cache: on the CPU it matched gathering all k*k taps into one (M, k*k*C_in) matrix for one GEMM
at 96x128 and was twice as fast at 200x336 (M = 17777). The backward pass saves only the
inputs instead of that k*k times larger matrix.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from model.network.sparse.sites import SparseSites


def gather_index(sites: SparseSites, kernel_size: int) -> Tensor:
    """(k*k, M) int64 rows into ``cat([feats, zero_row])``, tap-major; inactive taps -> row M."""

    def build() -> Tensor:
        table = sites.neighbours(kernel_size)  # (M, k*k), -1 = inactive
        return torch.where(table < 0, len(sites), table).t().contiguous()

    return sites.memo(("gather_index", kernel_size), build)


def _with_zero_row(feats: Tensor) -> Tensor:
    return torch.cat([feats, feats.new_zeros(1, feats.shape[1])])  # (M + 1, C)


def _sum_over_taps(feats: Tensor, weight: Tensor, index: Tensor) -> Tensor:
    """(M, C_in) -> (M, C_out): sum over taps t of ``feats[neighbour t] @ weight[:, t].T``.

    ``weight`` is (C_out, k, k, C_in), ``index`` (k*k, M) from :func:`gather_index`.
    """
    out_channels, kernel_size, _, in_channels = weight.shape
    padded = _with_zero_row(feats)
    taps = weight.reshape(out_channels, kernel_size * kernel_size, in_channels)
    taps = taps.to(feats.dtype)  # under autocast (bf16 on the CPU) the features' dtype
    out = feats.new_zeros(index.shape[1], out_channels)
    for tap in range(kernel_size * kernel_size):
        out.addmm_(padded.index_select(0, index[tap]), taps[:, tap].t())
    return out


class _GatherGemmConv(torch.autograd.Function):
    """Bias-free submanifold conv; the backward recomputes gathers instead of saving them."""

    @staticmethod
    def forward(ctx: FunctionCtx, feats: Tensor, weight: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(feats, weight, index)
        return _sum_over_taps(feats, weight, index)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        feats, weight, index = ctx.saved_tensors
        grad_feats = grad_weight = None
        if ctx.needs_input_grad[0]:
            # If j is site i's neighbour at tap t, i is j's neighbour at the mirrored tap, so
            # the transposed conv is this conv with the flipped, channel-swapped kernel.
            grad_feats = _sum_over_taps(grad_out, weight.flip(1, 2).permute(3, 1, 2, 0), index)
        if ctx.needs_input_grad[1]:
            padded = _with_zero_row(feats)
            grad_weight = torch.stack(
                [grad_out.t() @ padded.index_select(0, tap_index) for tap_index in index], dim=1
            ).view_as(weight)  # (C_out, k*k, C_in) -> (C_out, k, k, C_in)
        return grad_feats, grad_weight, None


def submanifold_conv_torch(
    feats: Tensor, weight: Tensor, bias: Tensor | None, sites: SparseSites
) -> Tensor:
    """(M, C_in) -> (M, C_out) with ``weight`` (C_out, k, k, C_in) and ``bias`` (C_out,)."""
    out: Tensor = _GatherGemmConv.apply(feats, weight, gather_index(sites, weight.shape[1]))
    return out if bias is None else out + bias
