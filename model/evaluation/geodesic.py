"""Geodesic distances on the body mesh between surface points given as chart coordinates.

The evaluator needs d(p̂, p) for points named by (I, U, V). All-pairs geodesics over the
13,718 vertices of the body mesh would take 750 MB, so, as DensePose does on its subsampled
SMPL mesh, distances are kept between a subset of **samples** only:

* the mesh graph has one edge per triangle side, weighted by its length in metres (Dijkstra
  on it overestimates the surface geodesic slightly: paths follow edges);
* samples are drawn by geodesic farthest-point sampling over the largest connected component
  (the body; anny's eyes and tongue are separate components), and their all-pairs distances
  are one multi-source Dijkstra;
* a chart point (I, U, V) goes to the nearest face corner of chart I in U, V space (corners of
  the body component only: a point on an eye or the tongue lands on the head skin around it),
  and from the corner's vertex to its geodesically nearest sample.

``load_body_geodesics`` builds this for anny's rest mesh once (seconds) and caches it in
``<cache>/geodesic/``. The error this adds is measured in ``docs/evaluation.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
import scipy.sparse as sparse
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from model.config import NUM_PARTS
from model.data.cache import keyed_cache_path, save_npz

GEODESIC_VERSION = 1
"""Bump when the construction changes: the cache is keyed by it."""
DEFAULT_SAMPLES = 3000
STEINER_POINTS = 1
"""Points per edge of the geodesic graph (``mesh_graph``) of the body."""
_CHUNK = 128
"""Dijkstra sources per call (bounds the (chunk, nodes) float64 rows held at once)."""


def mesh_graph(
    vertices: np.ndarray, faces: np.ndarray, *, points_per_edge: int = 0
) -> sparse.csr_matrix:
    """Symmetric sparse graph for geodesics on a triangle mesh, weighted by length.

    Nodes: the V vertices first, then ``points_per_edge`` points evenly spaced on every
    edge (Steiner points); every two nodes on the boundary of one face are joined by the
    straight segment across it. With 0 the graph is the mesh's edges.

    Args:
        vertices: (V, 3) float positions; faces: (F, 3) int vertex indices.

    Returns:
        (V + E·k, V + E·k) csr matrix, E the number of distinct edges, k ``points_per_edge``.
    """
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"need (V, 3) vertices, (F, 3) faces; got {vertices.shape}, {faces.shape}")
    sides = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    edges, side_edge = np.unique(sides, axis=0, return_inverse=True)
    side_edge = side_edge.reshape(-1)
    steps = np.arange(1, points_per_edge + 1) / (points_per_edge + 1)  # (k,)
    start, end = vertices[edges[:, 0], None], vertices[edges[:, 1], None]  # (E, 1, 3)
    inner = start * (1 - steps[:, None]) + end * steps[:, None]  # (E, k, 3)
    nodes = np.concatenate([vertices, inner.reshape(-1, 3)])  # (V + E·k, 3)
    face_sides = side_edge.reshape(3, len(faces)).T  # (F, 3) edge of each side
    on_sides = len(vertices) + face_sides[..., None] * points_per_edge + np.arange(points_per_edge)
    boundary = np.concatenate([faces, on_sides.reshape(len(faces), -1)], axis=1)  # (F, 3 + 3k)
    first, second = np.triu_indices(boundary.shape[1], 1)
    pairs = np.sort(np.stack([boundary[:, first].ravel(), boundary[:, second].ravel()], 1), axis=1)
    pairs = np.unique(pairs, axis=0)  # segments along shared edges come from both faces
    lengths = np.linalg.norm(nodes[pairs[:, 0]] - nodes[pairs[:, 1]], axis=1)
    # csgraph reads an explicit 0 as "no edge": keep coincident nodes connected
    lengths = np.maximum(lengths, 1e-12)
    count = len(nodes)
    upper = sparse.coo_matrix((lengths, (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    return (upper + upper.T).tocsr()


def largest_component(graph: sparse.csr_matrix, num_vertices: int) -> np.ndarray:
    """(C,) int64 sorted vertices (nodes below ``num_vertices``) of the largest connected
    component of the graph."""
    _, labels = connected_components(graph, directed=False)
    labels = labels[:num_vertices]
    return np.flatnonzero(labels == np.bincount(labels).argmax())


def farthest_point_samples(
    graph: sparse.csr_matrix, candidates: np.ndarray, count: int
) -> np.ndarray:
    """(count,) int64 vertices picked from ``candidates`` by geodesic farthest-point sampling.

    Starts at ``candidates[0]``; each next sample is the candidate farthest from all chosen.
    """
    if not 0 < count <= len(candidates):
        raise ValueError(f"need 0 < count <= {len(candidates)} candidates, got {count}")
    nearest = np.full(graph.shape[0], np.inf)
    chosen = [int(candidates[0])]
    while True:
        radius = nearest[candidates].max()  # farther vertices cannot get closer
        reached = dijkstra(graph, directed=False, indices=chosen[-1], limit=radius)
        np.minimum(nearest, reached, out=nearest)
        if len(chosen) == count:
            return np.asarray(chosen, dtype=np.int64)
        chosen.append(int(candidates[np.argmax(nearest[candidates])]))


def sample_distances(
    graph: sparse.csr_matrix, samples: np.ndarray, num_vertices: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geodesics from every sample (nodes below ``num_vertices`` are the mesh vertices).

    Returns:
        distances: (S, S) float32, between samples (inf across components);
        nearest: (V,) int64, index into ``samples`` of each vertex's nearest sample (-1 if
            none is reachable);
        spacing: (V,) float32, the distance to it (inf if none).
    """
    count = num_vertices
    distances = np.empty((len(samples), len(samples)), dtype=np.float32)
    spacing = np.full(count, np.inf)
    nearest = np.full(count, -1, dtype=np.int64)
    for start in range(0, len(samples), _CHUNK):
        rows = dijkstra(graph, directed=False, indices=samples[start : start + _CHUNK])
        rows = rows[:, :count]
        distances[start : start + len(rows)] = rows[:, samples]
        best = rows.argmin(axis=0)
        closer = rows[best, np.arange(count)] < spacing
        spacing[closer] = rows[best[closer], np.flatnonzero(closer)]
        nearest[closer] = start + best[closer]
    return distances, nearest, spacing.astype(np.float32)


@dataclass(frozen=True)
class SurfaceGeodesics:
    """Geodesic distances between chart points, through a subset of mesh vertices (samples).

    Attributes:
        distances: (S, S) float32, geodesics between samples in metres (inf across components).
        corner_chart: (Q,) int64, chart I in 1..24 of each lookup entry (a face corner).
        corner_uv: (Q, 2) float32, its U, V.
        corner_sample: (Q,) int64, index into the samples of the sample nearest its vertex.
        spacing: (V,) float32, every mesh vertex's geodesic distance to its nearest sample
            (inf off the sampled component): the quantisation of the lookup.
    """

    distances: np.ndarray
    corner_chart: np.ndarray
    corner_uv: np.ndarray
    corner_sample: np.ndarray
    spacing: np.ndarray

    @cached_property
    def _trees(self) -> dict[int, tuple[cKDTree, np.ndarray]]:
        trees = {}
        for chart in np.unique(self.corner_chart):
            mine = self.corner_chart == chart
            trees[int(chart)] = (cKDTree(self.corner_uv[mine]), self.corner_sample[mine])
        return trees

    def nearest_samples(self, parts: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """(P,) int64 sample of each chart point, -1 where ``parts`` is 0 (background).

        Args:
            parts: (P,) int chart I in 0..24; uv: (P, 2) float U, V in [0, 1].
        """
        if parts.ndim != 1 or uv.shape != (len(parts), 2):
            raise ValueError(f"need (P,) parts and (P, 2) uv, got {parts.shape}, {uv.shape}")
        if len(parts) and not 0 <= parts.min() <= parts.max() <= NUM_PARTS:
            raise ValueError(f"charts must be in 0..{NUM_PARTS}, got {parts.min()}..{parts.max()}")
        out = np.full(len(parts), -1, dtype=np.int64)
        for chart in np.unique(parts[parts > 0]):
            tree, samples = self._trees[int(chart)]
            mine = parts == chart
            out[mine] = samples[tree.query(uv[mine])[1]]
        return out

    def between(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(P,) float64 distances between samples ``a`` (P,) and ``b`` (P,); inf where either
        is -1."""
        out = np.full(len(a), np.inf)
        valid = (a >= 0) & (b >= 0)
        out[valid] = self.distances[a[valid], b[valid]]
        return out


def build_surface_geodesics(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_chart: np.ndarray,
    corner_uv: np.ndarray,
    *,
    num_samples: int,
    points_per_edge: int,
) -> SurfaceGeodesics:
    """Sample the largest component of a charted mesh and measure geodesics (uncached).

    Args:
        vertices: (V, 3) float, metres; faces: (F, 3) int; face_chart: (F,) int chart 1..24;
        corner_uv: (F, 3, 2) float U, V of each face corner; num_samples: at most the
            component's vertex count; points_per_edge: Steiner points (``mesh_graph``).
    """
    if face_chart.shape != (len(faces),) or corner_uv.shape != (len(faces), 3, 2):
        raise ValueError(
            f"need ({len(faces)},) face_chart and ({len(faces)}, 3, 2) corner_uv, "
            f"got {face_chart.shape}, {corner_uv.shape}"
        )
    graph = mesh_graph(vertices.astype(np.float64), faces, points_per_edge=points_per_edge)
    body = largest_component(graph, len(vertices))
    samples = farthest_point_samples(graph, body, min(num_samples, len(body)))
    distances, nearest, spacing = sample_distances(graph, samples, len(vertices))
    on_body = np.isin(faces[:, 0], body)
    corners = np.concatenate(
        [
            np.repeat(face_chart[on_body], 3)[:, None].astype(np.float64),
            corner_uv[on_body].reshape(-1, 2).astype(np.float64),
            nearest[faces[on_body].reshape(-1)][:, None].astype(np.float64),
        ],
        axis=1,
    )
    corners = np.unique(corners, axis=0)  # shared corners of neighbouring faces
    return SurfaceGeodesics(
        distances=distances,
        corner_chart=corners[:, 0].astype(np.int64),
        corner_uv=corners[:, 1:3].astype(np.float32),
        corner_sample=corners[:, 3].astype(np.int64),
        spacing=spacing,
    )


def load_body_geodesics(num_samples: int = DEFAULT_SAMPLES) -> SurfaceGeodesics:
    """``build_surface_geodesics`` on the body model's rest mesh (average shape, metres) and
    its chart atlas, cached in ``<cache>/geodesic/``. Needs the ``data`` extra (anny)."""
    from model.data.body import BodyModel
    from model.data.charts import ATLAS_VERSION, load_atlas

    template = BodyModel().template
    atlas = load_atlas(template)
    path = keyed_cache_path(
        "geodesic",
        f"geodesic_v{GEODESIC_VERSION}",
        f"{template.source}/atlas{ATLAS_VERSION}/{num_samples}/{STEINER_POINTS}".encode(),
        template.faces.numpy().tobytes(),
        atlas.face_chart.numpy().tobytes(),
    )
    if path.is_file():
        with np.load(path) as data:
            return SurfaceGeodesics(**{name: data[name] for name in data.files})
    geodesics = build_surface_geodesics(
        template.rest_vertices.numpy(),
        template.faces.numpy(),
        atlas.face_chart.numpy(),
        atlas.corner_uv.numpy(),
        num_samples=num_samples,
        points_per_edge=STEINER_POINTS,
    )
    save_npz(path, **{field.name: getattr(geodesics, field.name) for field in fields(geodesics)})
    return geodesics
