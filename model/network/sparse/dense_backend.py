"""Submanifold convolution computed densely: the reference semantics, and the cost of the
paper's "w/o Sparse" ablation."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from model.network.sparse.sites import SparseSites, gather_from_dense, scatter_to_dense


def submanifold_conv_dense(
    feats: Tensor, weight: Tensor, bias: Tensor | None, sites: SparseSites
) -> Tensor:
    """(M, C_in) -> (M, C_out): scatter to a zero map, ``F.conv2d``, gather at the sites.

    ``weight`` is (C_out, k, k, C_in), ``bias`` (C_out,).
    """
    kernel_size = weight.shape[1]
    dense = scatter_to_dense(feats, sites)  # (B, C_in, H, W)
    out = F.conv2d(dense, weight.permute(0, 3, 1, 2), bias, padding=kernel_size // 2)
    return gather_from_dense(out, sites)
