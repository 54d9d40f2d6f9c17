"""The toy scene generator: determinism and exact, self-consistent labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toy_scenes import (
    BACKGROUND_POINTS,
    FOREGROUND_POINTS,
    MIN_VISIBLE_PIXELS,
    ToyScene,
    ground_truth_result,
    make_toy_batch,
    make_toy_scene,
    render_toy_scene,
)

from model.outputs.encoding import paste_parts_uv

SEEDS = range(8)
FRONT_CHARTS = {2, 3, 4, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22, 23, 24}


def _tensors(scene: ToyScene) -> list[torch.Tensor]:
    targets = vars(scene.targets).values()
    return [scene.image, scene.parts, scene.uv, scene.instances, *targets]


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    first, again, other = render_toy_scene(5), render_toy_scene(5), render_toy_scene(6)
    for a, b in zip(_tensors(first), _tensors(again), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert not torch.equal(first.image, other.image)


@pytest.mark.parametrize("seed", SEEDS)
def test_dense_labels_are_consistent(seed: int) -> None:
    scene = render_toy_scene(seed)
    targets, height, width = scene.targets, 128, 160
    assert scene.image.shape == (3, height, width) and scene.image.dtype == torch.float32
    assert scene.image.min() >= 0 and scene.image.max() <= 1
    assert 1 <= len(targets) <= 3
    masks = targets.masks
    assert masks.shape == (len(targets), height, width) and masks.dtype == torch.bool
    assert torch.equal(masks, scene.instances[None] == torch.arange(len(targets))[:, None, None])
    assert torch.equal(scene.parts > 0, masks.any(0))  # part > 0 exactly where some mask
    assert set(scene.parts.unique().tolist()) <= FRONT_CHARTS | {0}
    assert scene.uv.min() >= 0 and scene.uv.max() <= 1
    assert not scene.uv[:, scene.parts == 0].any()
    assert (masks.sum((1, 2)) >= MIN_VISIBLE_PIXELS).all()
    assert torch.equal(targets.dp_masks, masks) and targets.has_dp.all()
    for mask, box in zip(masks, targets.boxes_xyxy, strict=True):
        rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
        expected = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
        assert box.tolist() == [float(c) for c in expected]


@pytest.mark.parametrize("seed", SEEDS)
def test_points_carry_the_label_of_their_pixel(seed: int) -> None:
    scene = render_toy_scene(seed)
    targets = scene.targets
    xy = targets.point_xy
    assert (xy.frac() == 0.5).all()  # pixel centres
    cols, rows = xy.long().unbind(1)
    instance = targets.point_instance
    assert torch.equal(instance, scene.instances[rows, cols])
    assert torch.equal(targets.point_part, scene.parts[rows, cols].long())
    assert torch.equal(targets.point_uv, scene.uv[:, rows, cols].T)
    foreground = instance >= 0
    assert (targets.point_part[foreground] > 0).all()
    assert targets.masks[instance[foreground], rows[foreground], cols[foreground]].all()
    assert (targets.point_part[~foreground] == 0).all()
    assert int((~foreground).sum()) == BACKGROUND_POINTS
    per_person = torch.bincount(instance[foreground], minlength=len(targets))
    expected = targets.masks.sum((1, 2)).clamp(max=FOREGROUND_POINTS)
    assert torch.equal(per_person, expected)
    pixels = rows * 160 + cols
    assert len(pixels.unique()) == len(pixels)  # no pixel annotated twice


def test_hardly_visible_persons_are_removed_with_their_pixels() -> None:
    scene = render_toy_scene(3, num_people=4, height=24, width=32)  # one person is dropped
    masks = scene.targets.masks
    assert len(masks) == 3
    assert (masks.sum((1, 2)) >= MIN_VISIBLE_PIXELS).all()
    assert torch.equal(scene.parts > 0, masks.any(0))


def test_zero_person_scene_is_background_only() -> None:
    image, targets = make_toy_scene(3, num_people=0, height=40, width=50)
    assert image.shape == (3, 40, 50)
    assert len(targets) == 0
    assert targets.boxes_xyxy.shape == (0, 4) and targets.masks.shape == (0, 40, 50)
    assert targets.dp_masks.shape == (0, 40, 50) and targets.has_dp.shape == (0,)
    assert len(targets.point_part) == BACKGROUND_POINTS
    assert (targets.point_part == 0).all() and (targets.point_instance == -1).all()
    assert targets.point_xy.shape == (BACKGROUND_POINTS, 2)
    assert targets.point_uv.shape == (BACKGROUND_POINTS, 2)


def test_uv_is_continuous_within_a_part() -> None:
    for seed in SEEDS:
        scene = render_toy_scene(seed, height=256, width=320)
        parts, instances, uv = scene.parts, scene.instances, scene.uv
        for first, second in (
            ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
            ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
        ):
            same = (
                (parts[first] > 0)
                & (parts[first] == parts[second])
                & (instances[first] == instances[second])
            )
            step = (uv[(slice(None), *first)] - uv[(slice(None), *second)]).abs()
            assert step[:, same].max() < 0.25


def _mean_column(scene: ToyScene, part: int) -> float:
    columns = torch.arange(scene.parts.shape[1], dtype=torch.float32).expand_as(scene.parts)
    return float(columns[scene.parts == part].mean())


def test_the_persons_left_is_on_the_image_right() -> None:
    for seed in SEEDS:
        scene = render_toy_scene(seed, num_people=1)
        assert _mean_column(scene, 24) > _mean_column(scene, 23)  # head: left, right half
        assert _mean_column(scene, 10) > _mean_column(scene, 9)  # upper legs


def test_ground_truth_result_pastes_back_to_the_label_maps() -> None:
    scene = render_toy_scene(2)
    parts, u, v = paste_parts_uv(ground_truth_result(scene))
    assert torch.equal(parts, scene.parts)
    assert torch.equal(torch.stack([u, v]), scene.uv)


def test_batch_stacks_the_scenes_of_its_seeds() -> None:
    images, targets = make_toy_batch([0, 1, 2], height=64, width=96)
    assert images.shape == (3, 3, 64, 96) and len(targets) == 3
    image, first = make_toy_scene(1, height=64, width=96)
    assert torch.equal(images[1], image)
    assert torch.equal(targets[1].point_xy, first.point_xy)


def test_invalid_person_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="num_people"):
        make_toy_scene(0, num_people=-1)
    with pytest.raises(ValueError, match="max_people"):
        make_toy_scene(0, max_people=0)


def test_scene_colours_differ_between_parts() -> None:
    scene = render_toy_scene(0)
    image = scene.image.permute(1, 2, 0)
    means = np.stack([image[scene.parts == part].mean(0).numpy()
                      for part in scene.parts.unique().tolist() if part > 0])  # fmt: skip
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert distances[~np.eye(len(means), dtype=bool)].min() > 0.1
