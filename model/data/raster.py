"""A vectorised z-buffer triangle rasteriser in torch (CPU; one thread per worker process).

Each triangle's covered pixel centres ((x + 0.5, y + 0.5)) are enumerated inside a square
of side k (the next power of two of its bounding box), all triangles of one k at once; the
nearest fragment per pixel wins through one ``scatter_reduce(amin)`` on a 64-bit key
``(quantised depth << 26) | face id``, which is exact and order-independent (deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_FACE_BITS = 26
"""Face ids must fit in 26 bits (67 M triangles)."""
_DEPTH_LEVELS = 2**36
_CHUNK = 1 << 21
"""Candidate pixels processed at once (bounds memory to ~100 MB)."""


@dataclass
class Fragments:
    """The visible triangle at every pixel.

    Attributes:
        face: (H, W) int64, face id (-1 = no triangle).
        bary: (H, W, 3) float32, perspective-correct barycentric weights of the face's corners
            (0 where ``face`` is -1).
    """

    face: Tensor
    bary: Tensor

    def interpolate(self, corner_values: Tensor) -> Tensor:
        """(F', 3, C) per-corner values -> (H, W, C) at every pixel (0 where empty).

        Face ids are taken modulo F', so the corners of one mesh serve a scene of copies of it.
        """
        covered = self.face >= 0
        out = corner_values.new_zeros(*self.face.shape, corner_values.shape[-1])
        values = corner_values[self.face[covered] % corner_values.shape[0]]  # [Q, 3, C]
        out[covered] = (self.bary[covered].unsqueeze(-1) * values).sum(dim=1)
        return out


def _edge(ax: Tensor, ay: Tensor, bx: Tensor, by: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """Twice the signed area of (a, b, p): positive when p is left of a -> b (y down: CW)."""
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


def rasterize(
    screen: Tensor, faces: Tensor, height: int, width: int, *, near: float = 1e-3
) -> Fragments:
    """Rasterise triangles given in screen space.

    Args:
        screen: (V, 3) float32: x, y in pixels (pixel (i, j) spans [j, j+1) × [i, i+1)) and
            depth z (> 0, distance along the optical axis) of every vertex.
        faces: (F, 3) int64 vertex indices. Both windings are drawn (no culling).
        height, width: image size in pixels.
        near: triangles with a corner at depth <= ``near`` are dropped.

    Returns:
        The nearest triangle and its barycentric weights at every pixel centre.
    """
    if faces.shape[0] >= 1 << _FACE_BITS:
        raise ValueError(f"at most {1 << _FACE_BITS} faces, got {faces.shape[0]}")
    tri = screen[faces]  # [F, 3, 3]
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    x0 = torch.ceil(x.min(dim=1).values - 0.5).clamp(min=0)
    y0 = torch.ceil(y.min(dim=1).values - 0.5).clamp(min=0)
    x1 = torch.floor(x.max(dim=1).values - 0.5).clamp(max=width - 1)
    y1 = torch.floor(y.max(dim=1).values - 0.5).clamp(max=height - 1)
    area = _edge(x[:, 0], y[:, 0], x[:, 1], y[:, 1], x[:, 2], y[:, 2])
    keep = (x1 >= x0) & (y1 >= y0) & (z.min(dim=1).values > near) & (area.abs() > 1e-9)
    ids = torch.nonzero(keep).squeeze(1)
    size = torch.maximum(x1 - x0, y1 - y0)[ids].long() + 1
    k = torch.pow(2, torch.ceil(torch.log2(size.float()))).long()
    inv_z = 1.0 / z.clamp(min=near)
    z_max = float(z[ids].max()) if len(ids) else 1.0
    zbuf = torch.full((height * width,), torch.iinfo(torch.int64).max, dtype=torch.int64)
    for side in torch.unique(k).tolist():
        group = ids[k == side]
        offsets = torch.arange(side * side)
        ox, oy = offsets % side, offsets // side
        per_chunk = max(1, _CHUNK // (side * side))
        for start in range(0, len(group), per_chunk):
            f = group[start : start + per_chunk]
            px = x0[f, None] + ox  # [Fc, k²]
            py = y0[f, None] + oy
            inside = (px <= x1[f, None]) & (py <= y1[f, None])
            cx, cy = px + 0.5, py + 0.5
            fx, fy = x[f], y[f]
            w0 = _edge(fx[:, 1:2], fy[:, 1:2], fx[:, 2:3], fy[:, 2:3], cx, cy)
            w1 = _edge(fx[:, 2:3], fy[:, 2:3], fx[:, 0:1], fy[:, 0:1], cx, cy)
            w2 = _edge(fx[:, 0:1], fy[:, 0:1], fx[:, 1:2], fy[:, 1:2], cx, cy)
            sign = torch.sign(area[f])[:, None]
            inside &= (w0 * sign >= 0) & (w1 * sign >= 0) & (w2 * sign >= 0)
            a = area[f, None]
            iz = (w0 * inv_z[f, 0:1] + w1 * inv_z[f, 1:2] + w2 * inv_z[f, 2:3]) / a
            depth = (1.0 / iz).clamp(0, z_max)
            key = (depth / z_max * (_DEPTH_LEVELS - 1)).long() << _FACE_BITS | f[:, None]
            pixel = (py * width + px).long()
            zbuf.scatter_reduce_(0, pixel[inside], key[inside], reduce="amin")
    return _fragments(zbuf, screen, faces, height, width)


def _fragments(zbuf: Tensor, screen: Tensor, faces: Tensor, height: int, width: int) -> Fragments:
    """Winning face per pixel and its perspective-correct barycentrics."""
    covered = zbuf != torch.iinfo(torch.int64).max
    face = torch.full((height * width,), -1, dtype=torch.int64)
    face[covered] = zbuf[covered] & ((1 << _FACE_BITS) - 1)
    pixels = torch.nonzero(covered).squeeze(1)
    tri = screen[faces[face[pixels]]]  # [Q, 3, 3]
    cx = (pixels % width).float() + 0.5
    cy = (pixels // width).float() + 0.5
    x, y = tri[..., 0], tri[..., 1]
    w = (
        torch.stack(
            [
                _edge(x[:, 1], y[:, 1], x[:, 2], y[:, 2], cx, cy),
                _edge(x[:, 2], y[:, 2], x[:, 0], y[:, 0], cx, cy),
                _edge(x[:, 0], y[:, 0], x[:, 1], y[:, 1], cx, cy),
            ],
            dim=1,
        )
        / tri[..., 2]
    )  # [Q, 3], screen weights over depth
    bary = torch.zeros(height * width, 3)
    bary[pixels] = w / w.sum(dim=1, keepdim=True)
    return Fragments(face=face.view(height, width), bary=bary.view(height, width, 3))
