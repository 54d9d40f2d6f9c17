"""The z-buffer rasteriser against a per-pixel brute-force reference."""

import torch

from model.data.raster import rasterize


def _reference(screen: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H, W) nearest face id per pixel centre by testing every face (float64), -1 = none."""
    out = torch.full((height, width), -1, dtype=torch.int64)
    best = torch.full((height, width), float("inf"), dtype=torch.float64)
    rows, cols = torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64)
    ys, xs = torch.meshgrid(rows + 0.5, cols + 0.5, indexing="ij")
    for f, (a, b, c) in enumerate(screen[faces].double()):
        area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        l0 = ((b[0] - xs) * (c[1] - ys) - (b[1] - ys) * (c[0] - xs)) / area
        l1 = ((c[0] - xs) * (a[1] - ys) - (c[1] - ys) * (a[0] - xs)) / area
        l2 = 1 - l0 - l1
        inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
        depth = 1 / (l0 / a[2] + l1 / b[2] + l2 / c[2])
        nearer = inside & (depth < best)
        best[nearer] = depth[nearer]
        out[nearer] = f
    return out


def _random_triangles(generator: torch.Generator, count: int, height: int, width: int):
    centres = torch.rand(count, 1, 2, generator=generator) * torch.tensor([width, height])
    spread = torch.rand(count, 1, 1, generator=generator) * 20 + 1
    xy = centres + (torch.rand(count, 3, 2, generator=generator) - 0.5) * spread
    z = 1 + torch.rand(count, 1, 1, generator=generator).expand(count, 3, 1) * 5
    z = z + torch.rand(count, 3, 1, generator=generator) * 0.1
    screen = torch.cat([xy, z], dim=2).reshape(-1, 3)
    return screen, torch.arange(3 * count).reshape(count, 3)


def test_matches_brute_force_including_occlusion():
    generator = torch.Generator().manual_seed(0)
    screen, faces = _random_triangles(generator, 60, 40, 56)
    fragments = rasterize(screen, faces, 40, 56)
    reference = _reference(screen, faces, 40, 56)
    agree = (fragments.face == reference).float().mean()
    assert (reference >= 0).sum() > 300  # triangles overlap and cover a good part
    assert agree > 0.995  # only exact ties on shared edges may differ


def test_barycentrics_interpolate_linear_attributes_exactly_at_constant_depth():
    screen = torch.tensor([[2.0, 3.0, 2.0], [30.0, 5.0, 2.0], [10.0, 25.0, 2.0]])
    faces = torch.tensor([[0, 1, 2]])
    fragments = rasterize(screen, faces, 32, 32)
    xy = fragments.interpolate(screen[faces][..., :2])  # [H, W, 2]
    covered = fragments.face >= 0
    ys, xs = torch.nonzero(covered, as_tuple=True)
    expected = torch.stack([xs + 0.5, ys + 0.5], dim=1).float()
    assert torch.allclose(xy[covered], expected, atol=1e-4)
    assert torch.all(fragments.bary[covered] >= -1e-6)
    assert torch.allclose(fragments.bary[covered].sum(-1), torch.ones(len(ys)))


def test_empty_and_offscreen_input_give_an_empty_image():
    empty = rasterize(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64), 8, 8)
    assert torch.all(empty.face == -1)
    behind = torch.tensor([[1.0, 1.0, -1.0], [6.0, 1.0, -1.0], [1.0, 6.0, -1.0]])
    outside = torch.tensor([[-9.0, -9.0, 1.0], [-5.0, -9.0, 1.0], [-9.0, -5.0, 1.0]])
    for screen in (behind, outside):
        assert torch.all(rasterize(screen, torch.tensor([[0, 1, 2]]), 8, 8).face == -1)
