"""Geodesic distances on a mesh and the chart-point lookup (small meshes, no body model)."""

import numpy as np
import pytest
from scipy.sparse.csgraph import dijkstra
from toy_surface import CHART_SIZE, grid, toy_geodesics

from model.evaluation.geodesic import (
    farthest_point_samples,
    largest_component,
    mesh_graph,
    sample_distances,
)


def _floyd_warshall(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """All-pairs shortest paths over the triangle sides, the slow obvious way."""
    count = len(vertices)
    dist = np.full((count, count), np.inf)
    np.fill_diagonal(dist, 0.0)
    for face in faces:
        for i in range(3):
            a, b = face[i], face[(i + 1) % 3]
            dist[a, b] = dist[b, a] = np.linalg.norm(vertices[a] - vertices[b])
    for k in range(count):
        dist = np.minimum(dist, dist[:, k : k + 1] + dist[k : k + 1, :])
    return dist


def _two_components() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    vertices, faces = grid(4, 3, 0.1)
    vertices = vertices + rng.uniform(-0.03, 0.03, size=vertices.shape)  # uneven edges
    island = np.array([[0, 0, 1.0], [0.1, 0, 1.0], [0, 0.1, 1.0]])
    return np.concatenate([vertices, island]), np.concatenate([faces, [[20, 21, 22]]])


def test_edge_graph_distances_match_brute_force_and_components_are_apart():
    vertices, faces = _two_components()
    graph = mesh_graph(vertices, faces)
    expected = _floyd_warshall(vertices, faces)
    everything = np.arange(len(vertices))
    distances, nearest, spacing = sample_distances(graph, everything, len(vertices))
    np.testing.assert_allclose(distances, expected, rtol=1e-6)
    assert np.isinf(distances[:20, 20:]).all() and np.isinf(distances[20:, :20]).all()
    assert np.array_equal(nearest, everything) and not spacing.any()
    assert np.array_equal(largest_component(graph, len(vertices)), np.arange(20))


def test_steiner_points_bring_paths_closer_to_the_straight_line():
    vertices, faces = grid(8, 8, 0.05)
    far = 8  # (0.4, 0, 0) from vertex 0 is along an edge; (0.4, 0.2) is not
    target = 4 * 9 + far
    straight = np.linalg.norm(vertices[target] - vertices[0])
    plain = dijkstra(mesh_graph(vertices, faces), indices=0)[target]
    refined = dijkstra(mesh_graph(vertices, faces, points_per_edge=2), indices=0)[target]
    assert straight - 1e-9 <= refined < plain
    assert refined - straight < 0.5 * (plain - straight)
    along = dijkstra(mesh_graph(vertices, faces, points_per_edge=2), indices=0)[far]
    assert along == pytest.approx(0.4)


def test_farthest_point_samples_cover_the_surface_evenly():
    vertices, faces = grid(20, 10, 0.02)
    graph = mesh_graph(vertices, faces)
    samples = farthest_point_samples(graph, np.arange(len(vertices)), 30)
    assert len(np.unique(samples)) == 30 and samples[0] == 0
    distances, _, spacing = sample_distances(graph, samples, len(vertices))
    apart = distances[~np.eye(30, dtype=bool)].min()
    assert apart >= spacing.max() - 1e-9  # the covering radius is below every gap
    with pytest.raises(ValueError, match="count"):
        farthest_point_samples(graph, np.arange(5), 6)


@pytest.fixture(scope="module")
def geodesics():
    return toy_geodesics()


def test_sample_distances_are_a_metric(geodesics):
    d = geodesics.distances.astype(np.float64)
    assert np.isfinite(d).all()  # samples lie on the largest component only
    assert (
        np.array_equal(d, d.T)
        and not np.diag(d).any()
        and (d[~np.eye(len(d), dtype=bool)] > 0).all()
    )
    i, j, k = np.random.default_rng(0).integers(0, len(d), size=(3, 20000))
    assert (d[i, k] <= d[i, j] + d[j, k] + 1e-6).all()
    assert np.isinf(geodesics.spacing[-9:]).all()  # the detached square
    assert geodesics.spacing[:-9].max() < CHART_SIZE / 2


def test_chart_points_map_to_samples_and_distances_follow_the_surface(geodesics):
    parts = np.array([1, 1, 1, 2, 0, 23])
    uv = np.array([[0.1, 0.5], [0.9, 0.5], [1.0, 0.5], [0.0, 0.5], [0.5, 0.5], [0.5, 0.5]])
    samples = geodesics.nearest_samples(parts, uv)
    assert samples[4] == -1 and (np.delete(samples, 4) >= 0).all()
    tolerance = 2 * geodesics.spacing[:-9].max()
    across = geodesics.between(samples[:1], samples[1:2])[0]
    assert abs(across - 0.8 * CHART_SIZE) <= tolerance
    seam = geodesics.between(samples[2:3], samples[3:4])[0]  # chart 1 U=1 meets chart 2 U=0
    assert seam <= tolerance
    assert np.array_equal(geodesics.between(samples, samples) == 0, samples >= 0)
    assert np.isinf(geodesics.between(samples[4:5], samples[:1])).all()
    with pytest.raises(ValueError, match="charts"):
        geodesics.nearest_samples(np.array([25]), np.zeros((1, 2)))
