"""Submanifold convolution through spconv 2.x's native gather-GEMM-scatter, with our weight.

spconv is optional: it is imported on first use only, and :func:`spconv_supports` tells
whether it can run on a device. The weight layout (C_out, k, k, C_in) is spconv 2.x's KRSC
layout, so our parameter is handed to spconv as it is.

Three traps of spconv 2.3.8 (the CPU build), found by comparing with a dense float64 conv:

* ``get_indice_pairs`` reads the indices as a contiguous (M, 3) int32 buffer whatever their
  strides; ``mask.nonzero()`` is column-major, so passing it (even after ``.int()``) silently
  yields wrong neighbour pairs, and the conv degenerates to almost only its centre tap
  (relative error ~0.9). The indices are therefore made contiguous int32 here.
* Its CPU ``ConvAlgo.Native`` path races when torch runs more than one intra-op thread
  (forward: relative error 1-4 % in 15-80 % of the calls at 2 threads, ~1e-7 at 1 thread).
  The backward uses the same gather/GEMM/scatter loop, so on the CPU both passes run under a
  single intra-op thread: torch's thread count is set to 1 and restored around each call,
  under a lock so that concurrent calls cannot restore each other's setting too early.
* Its CPU backward asks torch for the current CUDA stream, so it fails where CUDA is not
  available; the backward then raises a RuntimeError that names the ``torch`` backend.

``ConvAlgo.Native`` is the only algorithm of the CPU build; it is used on CUDA too, so the
indice pairs are the same structure on every device.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from model.network.sparse.sites import SparseSites


@functools.cache
def _spconv_ops() -> ModuleType | None:
    """``spconv.pytorch.ops``, or None when spconv cannot be imported."""
    try:
        return importlib.import_module("spconv.pytorch.ops")
    except (ImportError, OSError):
        return None


def _ops() -> ModuleType:
    ops = _spconv_ops()
    if ops is None:
        raise ImportError("spconv is not importable: install spconv (e.g. spconv-cu126)")
    return ops


def _native_algo() -> Any:
    return importlib.import_module("spconv.core").ConvAlgo.Native


def spconv_supports(device: torch.device) -> bool:
    """Whether spconv imports and its build can run on ``device`` (CPU, or CUDA if built so)."""
    if _spconv_ops() is None:
        return False
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return not importlib.import_module("spconv.cppconstants").CPU_ONLY_BUILD
    return False


_THREAD_PIN_LOCK = threading.Lock()


@contextmanager
def _single_intra_op_thread(device: torch.device) -> Iterator[None]:
    """Run the body with one torch intra-op thread on the CPU; a no-op elsewhere."""
    if device.type != "cpu":
        yield
        return
    with _THREAD_PIN_LOCK:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def indice_pairs(sites: SparseSites, kernel_size: int) -> tuple[Tensor, Tensor]:
    """spconv's submanifold pairs for the sites, cached on them.

    Returns ``pairs`` (2, k*k, M) int32 (input row, output row per tap) and ``pair_counts``
    (k*k,) int32 (spconv fills the first half; the second half mirrors it).
    """

    def build() -> tuple[Tensor, Tensor]:
        indices = sites.coords.to(torch.int32).contiguous()  # see the module docstring
        pad = kernel_size // 2
        _, pairs, counts = _ops().get_indice_pairs(
            indices,
            sites.batch_size,
            list(sites.spatial_shape),
            _native_algo(),
            [kernel_size, kernel_size],
            [1, 1],  # stride
            [pad, pad],
            [1, 1],  # dilation
            [0, 0],  # output padding
            True,  # submanifold
            False,  # transposed
        )
        return pairs, counts

    return sites.memo(("spconv_pairs", kernel_size), build)


class _NativeSubmConv(torch.autograd.Function):
    """Bias-free submanifold conv through spconv's native ops, thread-safe on the CPU."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, feats: Tensor, weight: Tensor, pairs: Tensor, counts: Tensor
    ) -> Tensor:
        feats, weight = feats.contiguous(), weight.contiguous()
        ctx.save_for_backward(feats, weight, pairs, counts)
        with _single_intra_op_thread(feats.device):
            return _ops().indice_conv(
                feats, weight, pairs, counts, feats.shape[0], False, True, algo=_native_algo()
            )

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, Tensor, None, None]:
        feats, weight, pairs, counts = ctx.saved_tensors
        if feats.device.type == "cpu" and not torch.cuda.is_available():
            raise RuntimeError(
                "the spconv backend cannot backpropagate on this machine: spconv 2.3.8's CPU "
                "backward calls torch.cuda.current_stream(); train with backend 'torch'"
            )
        with _single_intra_op_thread(feats.device):
            grad_feats, grad_weight = _ops().indice_conv_backward(
                feats,
                weight,
                grad_out.contiguous(),
                pairs,
                counts,
                False,
                True,
                algo=_native_algo(),
            )
        return grad_feats, grad_weight, None, None


def submanifold_conv_spconv(
    feats: Tensor, weight: Tensor, bias: Tensor | None, sites: SparseSites
) -> Tensor:
    """(M, C_in) -> (M, C_out) with ``weight`` (C_out, k, k, C_in) and ``bias`` (C_out,)."""
    kernel_size = weight.shape[1]
    out: Tensor
    if len(sites) == 0:
        # Nothing to compute; this keeps zero-row launches away from spconv's CUDA kernels
        # (only its CPU path was seen to accept them) and the output connected to the graph.
        out = feats @ weight[:, kernel_size // 2, kernel_size // 2].t()
    else:
        pairs, counts = indice_pairs(sites, kernel_size)
        out = _NativeSubmConv.apply(feats, weight, pairs, counts)
    return out if bias is None else out + bias
