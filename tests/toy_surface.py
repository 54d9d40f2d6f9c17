"""A small charted surface standing in for the body mesh in evaluation tests (a test fixture).

A flat strip of 24 square charts side by side along x, ``CHART_SIZE`` metres each, U along
x and V along y inside each chart (neighbouring charts share their border vertices), plus a
detached little square (a second connected component, like anny's eyes) labelled chart 23.
"""

from __future__ import annotations

import numpy as np

from model.evaluation.geodesic import SurfaceGeodesics, build_surface_geodesics

CHART_SIZE = 0.3
CELLS = 6
"""Grid cells per chart side."""


def grid(columns: int, rows: int, size: float) -> tuple[np.ndarray, np.ndarray]:
    """A flat grid of columns x rows cells of ``size``: (V, 3) vertices, (F, 3) faces."""
    ys, xs = np.mgrid[0 : rows + 1, 0 : columns + 1]
    vertices = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1) * size
    index = np.arange(xs.size).reshape(rows + 1, columns + 1)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, 1:].ravel(), index[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return vertices, faces


def strip_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(V, 3) vertices, (F, 3) faces, (F,) chart per face, (F, 3, 2) U, V per face corner."""
    cell = CHART_SIZE / CELLS
    vertices, faces = grid(24 * CELLS, CELLS, cell)
    extra_vertices, extra_faces = grid(2, 2, cell)
    extra_vertices += [0.0, 0.0, 1.0]  # 1 m above the strip, not connected to it
    corners = vertices[faces]  # (F, 3, 3)
    chart = np.floor(corners[..., 0].mean(axis=1) / CHART_SIZE).astype(np.int64) + 1
    start = (chart - 1) * CHART_SIZE
    uv = np.stack(
        [(corners[..., 0] - start[:, None]) / CHART_SIZE, corners[..., 1] / CHART_SIZE], -1
    )
    extra_uv = extra_vertices[extra_faces][..., :2] / (2 * cell) * 0.2 + 0.4
    return (
        np.concatenate([vertices, extra_vertices]),
        np.concatenate([faces, extra_faces + len(vertices)]),
        np.concatenate([chart, np.full(len(extra_faces), 23)]),
        np.concatenate([uv, extra_uv]).clip(0, 1),
    )


def toy_geodesics(num_samples: int = 400, points_per_edge: int = 1) -> SurfaceGeodesics:
    vertices, faces, chart, uv = strip_mesh()
    return build_surface_geodesics(
        vertices, faces, chart, uv, num_samples=num_samples, points_per_edge=points_per_edge
    )
