"""Active sites of a batch of sparse 2-D feature maps, and conversions to and from dense maps.

Features at the M active sites are stored as an (M, C) tensor whose row i belongs to
``coords[i] = (b, y, x)``. Everything a convolution backend derives from the sites alone (the
neighbour table, spconv's indice pairs) is built once per ``SparseSites`` and reused by every
layer of a forward pass through :meth:`SparseSites.memo`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

_T = TypeVar("_T")


@dataclass(eq=False)
class SparseSites:
    """The active sites of a batch of B feature maps of size (H, W).

    Attributes:
        coords: (M, 3) int64, rows ``[b, y, x]`` sorted by (b, y, x), contiguous.
        batch_size: B.
        spatial_shape: (H, W) of the maps the sites live in.
    """

    coords: Tensor
    batch_size: int
    spatial_shape: tuple[int, int]
    _memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.coords.dim() != 2 or self.coords.shape[1] != 3:
            raise ValueError(f"coords must be (M, 3) [b, y, x], got {tuple(self.coords.shape)}")
        if self.coords.dtype != torch.int64:
            raise ValueError(f"coords must be int64, got {self.coords.dtype}")
        if len(self.spatial_shape) != 2:
            raise ValueError(f"spatial_shape must be (H, W), got {self.spatial_shape}")
        self.coords = self.coords.contiguous()
        self.spatial_shape = (int(self.spatial_shape[0]), int(self.spatial_shape[1]))

    @classmethod
    def from_mask(cls, mask: Tensor) -> SparseSites:
        """Sites where ``mask`` (B, H, W) bool is true, on the mask's device."""
        if mask.dim() != 3 or mask.dtype != torch.bool:
            raise ValueError(f"mask must be (B, H, W) bool, got {tuple(mask.shape)} {mask.dtype}")
        # nonzero() enumerates in row-major order, i.e. sorted by (b, y, x); its result is
        # column-major in memory, which __post_init__ makes contiguous.
        return cls(
            coords=mask.nonzero(),
            batch_size=mask.shape[0],
            spatial_shape=(mask.shape[1], mask.shape[2]),
        )

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    @property
    def device(self) -> torch.device:
        return self.coords.device

    def to(self, device: torch.device | str) -> SparseSites:
        """The same sites on ``device`` (derived tables are rebuilt there on demand)."""
        return SparseSites(self.coords.to(device), self.batch_size, self.spatial_shape)

    def memo(self, key: Any, build: Callable[[], _T]) -> _T:
        """``build()`` on the first call with ``key``, the cached result afterwards."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def neighbours(self, kernel_size: int = 3) -> Tensor:
        """(M, k*k) int64: site index of each tap's neighbour, -1 where it is inactive.

        Tap ``t = ky * k + kx`` looks at ``(y + ky - k//2, x + kx - k//2)``, matching the
        (ky, kx) order of a ``(C_out, k, k, C_in)`` weight and ``F.conv2d``'s cross-correlation.
        Cached per kernel size.
        """
        return self.memo(("neighbours", kernel_size), lambda: self._build_neighbours(kernel_size))

    def _build_neighbours(self, kernel_size: int) -> Tensor:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        pad = kernel_size // 2
        height, width = self.spatial_shape
        index_map = torch.full(
            (self.batch_size, height + 2 * pad, width + 2 * pad),
            -1,
            dtype=torch.int64,
            device=self.device,
        )
        b, y, x = self.coords.unbind(1)
        index_map[b, y + pad, x + pad] = torch.arange(len(self), device=self.device)
        taps = torch.arange(kernel_size, device=self.device)
        ky = taps.repeat_interleave(kernel_size)  # (k*k,)
        kx = taps.repeat(kernel_size)  # (k*k,)
        # In the padded map, tap (ky, kx) of site (y, x) sits at (y + ky, x + kx).
        return index_map[b[:, None], y[:, None] + ky, x[:, None] + kx]  # (M, k*k)


def scatter_to_dense(feats: Tensor, sites: SparseSites) -> Tensor:
    """(M, C) features at the sites -> (B, C, H, W) map, zeros at inactive positions."""
    check_features(feats, sites)
    height, width = sites.spatial_shape
    dense = feats.new_zeros(sites.batch_size, feats.shape[1], height, width)
    # Written in place through a channels-last view: no copy of the map, no permute after.
    dense.permute(0, 2, 3, 1).index_put_(sites.coords.unbind(1), feats)
    return dense


def gather_from_dense(x: Tensor, sites: SparseSites) -> Tensor:
    """(B, C, H, W) map -> (M, C) features at the sites."""
    expected = (sites.batch_size, *sites.spatial_shape)
    if x.dim() != 4 or (x.shape[0], x.shape[2], x.shape[3]) != expected:
        raise ValueError(
            f"x must be (B, C, H, W) with (B, H, W) = {expected}, got {tuple(x.shape)}"
        )
    b, y, xx = sites.coords.unbind(1)
    return x[b, :, y, xx]


def check_features(feats: Tensor, sites: SparseSites) -> None:
    """Raise ValueError unless ``feats`` is (M, C) for the M sites, on the sites' device."""
    if feats.dim() != 2 or feats.shape[0] != len(sites):
        raise ValueError(
            f"feats must be (M, C) with M = {len(sites)} sites, got {tuple(feats.shape)}"
        )
    if feats.device != sites.device:
        raise ValueError(f"feats are on {feats.device}, the sites on {sites.device}")
