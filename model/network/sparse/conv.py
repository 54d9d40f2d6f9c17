"""``SubmanifoldConv2d``: one module and one parameter layout, several interchangeable backends.

Semantics (submanifold conv, stride 1, padding k//2): outputs exist at the active sites only;
each is ``bias + sum over the k*k taps of weight . input at that neighbour``, inactive and
out-of-image neighbours contributing zero, i.e. exactly a dense ``F.conv2d`` of the map that is
zero at the inactive sites, read at the active ones.

Backends: ``torch`` (per tap a gather and a GEMM, any device, autograd), ``spconv`` (spconv's native
ops, optional dependency), ``dense`` (scatter, ``F.conv2d``, gather: the reference and the
paper's "w/o Sparse" cost), and ``auto`` (chosen per device by :func:`resolve_backend`).

CPU timings behind ``auto`` (one 3x3 layer, C_in = C_out = C, batch 1, ~26 % foreground of
random ellipses, neighbour tables / indice pairs prebuilt as within a forward pass; median of
30 runs in ms on this project's 2-core machine, torch 2.14.1, spconv 2.3.8 CPU build;
"thr" = torch intra-op threads; spconv is measured as this module runs it, Native at 1 thread):

    forward (no grad)                 spconv   torch    torch    dense
    H x W    C    M                   1 thr    2 thr    1 thr    2 thr
    96x128    64   3245                 2.5      1.0      1.9      7.2
    96x128   128   3245                 7.0      3.3      6.4     19.8
    200x336   64  17777                13.6      7.2     12.2     40.2
    200x336  128  17777                37.4     19.7     38.0    117.3

    forward + backward                         torch             dense
    96x128    64 / 128                      3.7 / 13.0       15.7 / 46.7
    200x336   64 / 128                     36.5 / 92.3       78.4 / 294.0

Repeat runs varied by up to 40 % (most at the smallest shape); the ordering never changed.
Building the tables once per forward pass costs 0.5 ms (96x128) / 1.5 ms (200x336) for
either backend. The torch backend at 2 threads is about twice as fast as spconv (which must
run single-threaded on the CPU, see ``spconv_backend``), both are proven equal to the dense
float64 reference under 2 threads, and spconv 2.3.8 cannot backpropagate on a CPU-only torch:
``auto`` therefore picks ``torch`` on the CPU. (While another process kept both cores busy,
every 2-thread op, sparse or dense, slowed down up to 20-fold and 1-thread ops did not; the
choice is made for an unshared machine.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from model.network.sparse.dense_backend import submanifold_conv_dense
from model.network.sparse.sites import SparseSites, check_features
from model.network.sparse.spconv_backend import spconv_supports, submanifold_conv_spconv
from model.network.sparse.torch_backend import submanifold_conv_torch

ConvFn = Callable[[Tensor, Tensor, Tensor | None, SparseSites], Tensor]

BACKENDS: dict[str, ConvFn] = {
    "torch": submanifold_conv_torch,
    "spconv": submanifold_conv_spconv,
    "dense": submanifold_conv_dense,
}
BACKEND_NAMES = ("auto", *BACKENDS)


def _check_name(name: str) -> None:
    if name not in BACKEND_NAMES:
        raise ValueError(f"sparse conv backend must be one of {BACKEND_NAMES}, got {name!r}")


def resolve_backend(name: str, device: torch.device) -> str:
    """The concrete backend that ``name`` means on ``device``.

    ``auto`` is ``spconv`` on CUDA when a CUDA build of spconv imports, ``torch`` otherwise
    (on the CPU the faster proven path, see the module docstring). An explicit ``spconv`` that
    cannot run on ``device`` and an unknown name raise ValueError.
    """
    _check_name(name)
    if name == "auto":
        return "spconv" if device.type == "cuda" and spconv_supports(device) else "torch"
    if name == "spconv" and not spconv_supports(device):
        raise ValueError(
            f"sparse conv backend 'spconv' cannot run on {device}: spconv is not importable "
            "or not built for this device; use 'torch' or 'auto'"
        )
    return name


class SubmanifoldConv2d(nn.Module):
    """Submanifold sparse 2-D convolution, stride 1, padding k//2, (M, C_in) -> (M, C_out).

    Parameters are the same for every backend (a checkpoint is backend independent):
    ``weight`` (C_out, k, k, C_in) [spconv 2.x's KRSC layout] and ``bias`` (C_out,).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        bias: bool = True,
        backend: str = "torch",
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        _check_name(backend)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(out_channels, kernel_size, kernel_size, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation (fan_in = k*k*C_in)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.kernel_size * self.kernel_size * self.in_channels)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, feats: Tensor, sites: SparseSites) -> Tensor:
        """(M, C_in) features at ``sites`` -> (M, C_out)."""
        check_features(feats, sites)
        if feats.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {feats.shape[1]}")
        backend = resolve_backend(self.backend, feats.device)
        return BACKENDS[backend](feats, self.weight, self.bias, sites)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"bias={self.bias is not None}, backend={self.backend!r}"
        )


def set_backend(module: nn.Module, backend: str) -> None:
    """Switch every ``SubmanifoldConv2d`` in ``module``'s tree to ``backend``."""
    _check_name(backend)
    for child in module.modules():
        if isinstance(child, SubmanifoldConv2d):
            child.backend = backend
