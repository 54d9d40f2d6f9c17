import itertools
import math

import pytest
import torch

from model.network.fcos_head import fcos_locations
from model.training.fcos_targets import (
    FcosTargets,
    assign_fcos_targets,
    centerness,
    level_size_ranges,
    ltrb_to_xyxy,
    xyxy_to_ltrb,
)

STRIDES = (8, 16, 32)


def _grid(image_size: int, strides: tuple[int, ...] = STRIDES) -> list[torch.Tensor]:
    sizes = [(image_size // s, image_size // s) for s in strides]
    return fcos_locations(sizes, strides, "cpu")


def _level_slices(locations: list[torch.Tensor]) -> list[slice]:
    starts = [0, *torch.tensor([len(loc) for loc in locations]).cumsum(0).tolist()]
    return [slice(a, b) for a, b in itertools.pairwise(starts)]


def _reference_assign(
    locations: list[torch.Tensor], strides: tuple[int, ...], boxes: list[list[float]],
    radius: float,
) -> list[int]:
    """FCOS's rules, one location and one box at a time, in plain Python."""
    ranges = level_size_ranges(strides)
    matched = []
    for level, (locs, stride) in enumerate(zip(locations, strides, strict=True)):
        lo, hi = ranges[level]
        for x, y in locs.tolist():
            best, best_area = -1, math.inf
            for g, (x0, y0, x1, y1) in enumerate(boxes):
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                rx0, rx1 = max(x0, cx - radius * stride), min(x1, cx + radius * stride)
                ry0, ry1 = max(y0, cy - radius * stride), min(y1, cy + radius * stride)
                in_center = rx0 < x < rx1 and ry0 < y < ry1
                in_box = x0 < x < x1 and y0 < y < y1
                max_dist = max(x - x0, y - y0, x1 - x, y1 - y)
                area = (x1 - x0) * (y1 - y0)
                if in_center and in_box and lo <= max_dist <= hi and area < best_area:
                    best, best_area = g, area
            matched.append(best)
    return matched


def test_fcos_locations_two_level_toy() -> None:
    level0, level1 = fcos_locations([(2, 3), (1, 2)], (8, 16), "cpu")
    assert level0.dtype == torch.float32
    expected0 = [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert level0.tolist() == expected0
    assert level1.tolist() == [[8, 8], [24, 8]]


def test_fcos_locations_rejects_mismatched_levels() -> None:
    with pytest.raises(ValueError, match="one stride per level"):
        fcos_locations([(2, 2)], (8, 16), "cpu")


def test_level_size_ranges_follow_fcos() -> None:
    inf = math.inf
    assert level_size_ranges((8, 16, 32, 64, 128)) == [
        (0, 64), (64, 128), (128, 256), (256, 512), (512, inf)
    ]
    assert level_size_ranges((8, 16, 32)) == [(0, 64), (64, 128), (128, inf)]
    assert level_size_ranges((8,)) == [(0, inf)]
    with pytest.raises(ValueError):
        level_size_ranges(())


def test_ltrb_round_trip_and_centerness() -> None:
    points = torch.tensor([[10.0, 20.0], [30.0, 5.0]])
    boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0]])
    ltrb = xyxy_to_ltrb(points, boxes)  # [2, 1, 4]
    assert ltrb[0, 0].tolist() == [10, 20, 30, 20]
    assert torch.equal(ltrb_to_xyxy(points, ltrb[:, 0]), boxes.expand(2, 4))
    value = centerness(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert value.item() == pytest.approx(math.sqrt(1 / 3 * 2 / 4))


def test_single_box_positives_near_centre_on_first_level() -> None:
    locations = _grid(128)
    box = torch.tensor([[40.0, 40.0, 80.0, 80.0]])  # centre (60, 60), max distance <= 40
    targets = assign_fcos_targets(locations, STRIDES, box, center_sampling_radius=1.5)
    assert isinstance(targets, FcosTargets) and len(targets) == sum(map(len, locations))

    positive = targets.matched >= 0
    points = torch.cat(locations)[positive]
    # Centre region on level 0: 60 ± 12 -> open interval (48, 72) -> x, y in {52, 60, 68}.
    assert sorted(map(tuple, points.tolist())) == [
        (x, y) for x in (52.0, 60.0, 68.0) for y in (52.0, 60.0, 68.0)
    ]
    assert positive[_level_slices(locations)[0]].sum() == 9
    assert (targets.matched[positive] == 0).all()
    expected_ltrb = torch.cat([points - box[:, :2], box[:, 2:] - points], dim=1)
    assert torch.equal(targets.box_ltrb[positive], expected_ltrb)
    assert (targets.box_ltrb[~positive] == 0).all() and (targets.centerness[~positive] == 0).all()

    at_centre = (torch.cat(locations) == torch.tensor([60.0, 60.0])).all(dim=1)
    assert targets.centerness[at_centre].item() == pytest.approx(1.0)
    assert (targets.centerness[positive] <= 1).all() and (targets.centerness[positive] > 0).all()


def test_overlapping_boxes_smaller_area_wins() -> None:
    locations = _grid(128)
    big = torch.tensor([30.0, 30.0, 90.0, 90.0])
    small = torch.tensor([40.0, 40.0, 80.0, 80.0])
    both = assign_fcos_targets(locations, STRIDES, torch.stack([big, small]))
    big_alone = assign_fcos_targets(locations, STRIDES, big[None])
    contested = (both.matched >= 0) & (big_alone.matched >= 0)
    assert contested.sum() == 9
    assert (both.matched[contested] == 1).all()
    assert torch.equal(both.box_ltrb[contested], xyxy_to_ltrb(torch.cat(locations), small[None])[
        contested, 0])


def test_big_boxes_go_to_higher_levels() -> None:
    locations = _grid(512)
    levels = _level_slices(locations)
    # 160 px box centred at 256: its centre-region locations have max distance 84 (level 0:
    # > 64), 88 (level 1: in [64, 128]) and 96 (level 2: < 128) -> level 1 only.
    medium = assign_fcos_targets(locations, STRIDES, torch.tensor([[176.0, 176.0, 336.0, 336.0]]))
    assert [int((medium.matched[level] == 0).sum()) for level in levels] == [0, 4, 0]
    # 400 px box: max distances 204, 208, 216 -> only level 2 ([128, inf)) takes it.
    large = assign_fcos_targets(locations, STRIDES, torch.tensor([[56.0, 56.0, 456.0, 456.0]]))
    assert [int((large.matched[level] == 0).sum()) for level in levels] == [0, 0, 4]


def test_zero_boxes_all_negative() -> None:
    locations = _grid(64)
    targets = assign_fcos_targets(locations, STRIDES, torch.zeros(0, 4))
    num = sum(map(len, locations))
    assert targets.matched.tolist() == [-1] * num
    assert targets.box_ltrb.shape == (num, 4) and targets.centerness.shape == (num,)
    assert (targets.box_ltrb == 0).all() and (targets.centerness == 0).all()


@pytest.mark.parametrize("radius", [1.0, 1.5, 2.5])
def test_matches_brute_force_reference(radius: float) -> None:
    generator = torch.Generator().manual_seed(0)
    locations = _grid(256)
    corners = torch.rand(12, 2, generator=generator) * 200
    sizes = torch.rand(12, 2, generator=generator) * 180 + 4
    boxes = torch.cat([corners, corners + sizes], dim=1)
    targets = assign_fcos_targets(locations, STRIDES, boxes, center_sampling_radius=radius)
    expected = _reference_assign(locations, STRIDES, boxes.tolist(), radius)
    assert targets.matched.tolist() == expected
    assert (targets.matched >= 0).sum() > 20  # the case is not trivially empty


def test_assign_validates_inputs() -> None:
    locations = _grid(64)
    with pytest.raises(ValueError, match=r"\(G, 4\)"):
        assign_fcos_targets(locations, STRIDES, torch.zeros(3))
    with pytest.raises(ValueError, match="one stride per level"):
        assign_fcos_targets(locations, (8, 16), torch.zeros(0, 4))
    with pytest.raises(ValueError, match="center_sampling_radius"):
        assign_fcos_targets(locations, STRIDES, torch.zeros(0, 4), center_sampling_radius=0)
