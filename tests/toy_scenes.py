"""Deterministic toy multi-person scenes with exact dense-pose labels (a test fixture).

A stand-in for the synthetic body renderer. Each person is a front-facing stick figure of
filled rectangles and ellipses, one DensePose chart per shape (front charts; the person's left
is on the image right): torso 2, head 23 (right half) / 24 (left half), upper arms 17 (left) /
18 (right), lower arms 21 / 22, hands 4 / 3, upper legs 10 / 9, lower legs 14 / 13,
feet 5 (left) / 6 (right). U runs along a shape's axis (0 at the proximal end), V across it;
both lie in [0, 1] and are continuous within a shape.

Later persons occlude earlier ones; masks hold visible pixels only, and persons with fewer
than ``MIN_VISIBLE_PIXELS`` visible pixels are removed from the scene (image and labels).
Every part has a fixed colour (plus per-person tint, shading along U and pixel noise) over a
textured random background, so a tiny CNN can learn parts from colour.

Example image (``--overlay`` draws the ground truth over it):
``python -m tests.toy_scenes out.png --seed 3 --height 256 --width 320 --overlay``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch import Tensor

from model.config import NUM_PART_CLASSES
from model.structures import DensePoseResult, DensePoseTargets, integer_boxes

MIN_VISIBLE_PIXELS = 30
FOREGROUND_POINTS = 100
"""Annotated points per person, at most (fewer when the person has fewer pixels)."""
BACKGROUND_POINTS = 20
"""Background points (I = 0) per image, attached to no person: ``point_instance`` = -1."""

_PART_APPEARANCE = np.random.default_rng(69).uniform(0.1, 0.95, size=(NUM_PART_CLASSES, 3))
"""(25, 3) fixed RGB in [0, 1] of each chart's 'clothing' (seed 69: of seeds 0..199 the one
keeping the 15 charts used here furthest apart, at least 0.2 in RGB distance)."""


@dataclass(frozen=True)
class _Shape:
    """A filled shape between ``start`` and ``end`` (x, y pixels) carrying one chart."""

    part: int
    kind: Literal["rect", "ellipse"]
    start: np.ndarray
    end: np.ndarray
    half_width: float
    across: tuple[float, float] = (-1.0, 1.0)
    """Kept range of the normalised across-coordinate t (V = 0 at t = across[0])."""


@dataclass
class ToyScene:
    """One toy image and its exact labels.

    Attributes:
        image: (3, H, W) float32 RGB in [0, 1].
        targets: training targets (boxes, masks, points) of the N visible persons.
        parts: (H, W) uint8, chart I of every pixel (0 = background).
        uv: (2, H, W) float32, U and V in [0, 1] (0 where I = 0).
        instances: (H, W) int64, person index of every pixel (-1 = background).
    """

    image: Tensor
    targets: DensePoseTargets
    parts: Tensor
    uv: Tensor
    instances: Tensor


def _direction(down: np.ndarray, side: np.ndarray, angle: float) -> np.ndarray:
    """Unit vector ``angle`` radians from ``down`` towards ``side``."""
    return math.cos(angle) * down + math.sin(angle) * side


def _legs(
    rng: np.random.Generator, pelvis: np.ndarray, down: np.ndarray, right: np.ndarray, s: float
) -> list[_Shape]:
    """Both legs: hip -> knee -> ankle, and a foot pointing outwards."""
    shapes = []
    for left in (False, True):
        side = right if left else -right
        hip = pelvis + 0.06 * s * side
        knee = hip + 0.25 * s * _direction(down, side, rng.uniform(-0.1, 0.45))
        shin = _direction(down, side, rng.uniform(-0.15, 0.5))
        ankle = knee + 0.23 * s * shin
        foot = _direction(down, side, rng.uniform(1.1, 1.5))
        shapes += [
            _Shape(10 if left else 9, "rect", hip, knee, 0.055 * s),
            _Shape(14 if left else 13, "rect", knee, ankle, 0.045 * s),
            _Shape(5 if left else 6, "ellipse", ankle - 0.02 * s * foot,
                   ankle + 0.08 * s * foot, 0.028 * s),
        ]  # fmt: skip
    return shapes


def _arms(
    rng: np.random.Generator, neck: np.ndarray, down: np.ndarray, right: np.ndarray, s: float
) -> list[_Shape]:
    """Both arms: shoulder -> elbow -> wrist, and a hand."""
    shapes = []
    for left in (False, True):
        side = right if left else -right
        shoulder = neck + 0.04 * s * down + 0.1 * s * side
        abduction = rng.uniform(-0.2, 2.2)
        elbow = shoulder + 0.17 * s * _direction(down, side, abduction)
        lower = _direction(down, side, abduction + rng.uniform(-0.3, 1.6))
        wrist = elbow + 0.16 * s * lower
        shapes += [
            _Shape(17 if left else 18, "rect", shoulder, elbow, 0.04 * s),
            _Shape(21 if left else 22, "rect", elbow, wrist, 0.033 * s),
            _Shape(4 if left else 3, "ellipse", wrist - 0.01 * s * lower,
                   wrist + 0.07 * s * lower, 0.03 * s),
        ]  # fmt: skip
    return shapes


def _stick_figure(rng: np.random.Generator, height: int, width: int) -> list[_Shape]:
    """Shapes of one random person in drawing order (later shapes cover earlier ones)."""
    s = rng.uniform(0.45, 0.95) * height  # person height in pixels
    pelvis = np.array([rng.uniform(0.1, 0.9) * width, rng.uniform(0.4, 0.6) * height])
    tilt = rng.uniform(-0.25, 0.25)
    down = np.array([-math.sin(tilt), math.cos(tilt)])
    right = np.array([down[1], -down[0]])  # the image right when upright
    neck = pelvis - 0.32 * s * down
    chin, crown = neck + 0.01 * s * down, neck - 0.19 * s * down
    head = [
        _Shape(23, "ellipse", chin, crown, 0.065 * s, across=(-1.0, 0.0)),
        _Shape(24, "ellipse", chin, crown, 0.065 * s, across=(0.0, 1.0)),
    ]
    torso = _Shape(2, "rect", pelvis, neck, 0.1 * s)
    return [*_legs(rng, pelvis, down, right, s), torso, *head, *_arms(rng, neck, down, right, s)]


def _rasterize(
    shape: _Shape, grid_x: np.ndarray, grid_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels inside a shape and their U, V: three (H, W) arrays (bool, float, float)."""
    axis = shape.end - shape.start
    half_length = float(np.linalg.norm(axis)) / 2
    ax, ay = axis / (2 * half_length)
    dx = grid_x - (shape.start[0] + shape.end[0]) / 2
    dy = grid_y - (shape.start[1] + shape.end[1]) / 2
    along = (dx * ax + dy * ay) / half_length
    across = (-dx * ay + dy * ax) / shape.half_width
    if shape.kind == "ellipse":
        inside = along**2 + across**2 <= 1
    else:
        inside = (np.abs(along) <= 1) & (np.abs(across) <= 1)
    lo, hi = shape.across
    inside &= (across >= lo) & (across <= hi)
    u = np.clip((along + 1) / 2, 0, 1)
    v = np.clip((across - lo) / (hi - lo), 0, 1)
    return inside, u, v


def _render_person(shapes: list[_Shape], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One person alone: parts (H, W) uint8 and uv (2, H, W) float32."""
    grid_y, grid_x = np.mgrid[0:height, 0:width] + 0.5  # pixel centres
    parts = np.zeros((height, width), dtype=np.uint8)
    uv = np.zeros((2, height, width), dtype=np.float32)
    for shape in shapes:
        inside, u, v = _rasterize(shape, grid_x, grid_y)
        parts[inside] = shape.part
        uv[0][inside], uv[1][inside] = u[inside], v[inside]
    return parts, uv


def _compose(
    people: list[tuple[np.ndarray, np.ndarray]], height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paint persons in order: instances (H, W) int64 (-1 = none), parts (H, W), uv (2, H, W)."""
    instances = np.full((height, width), -1, dtype=np.int64)
    parts = np.zeros((height, width), dtype=np.uint8)
    uv = np.zeros((2, height, width), dtype=np.float32)
    for index, (person_parts, person_uv) in enumerate(people):
        visible = person_parts > 0
        instances[visible] = index
        parts[visible] = person_parts[visible]
        uv[:, visible] = person_uv[:, visible]
    return instances, parts, uv


def _visible_people(
    people: list[tuple[np.ndarray, np.ndarray]], height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_compose`` after dropping persons with fewer than ``MIN_VISIBLE_PIXELS`` visible.

    Dropping a person only uncovers pixels of the others, so one pass suffices.
    """
    instances, _, _ = _compose(people, height, width)
    counts = np.bincount(instances.ravel() + 1, minlength=len(people) + 1)[1:]
    kept = [person for person, count in zip(people, counts, strict=True)
            if count >= MIN_VISIBLE_PIXELS]  # fmt: skip
    return _compose(kept, height, width)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: smooth colour noise plus a few flat distractor shapes."""
    cells = (10, max(2, round(10 * width / height)))  # the same texture at every image size
    coarse = rng.uniform(0, 1, size=(*cells, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    base = rng.uniform(0.2, 0.8, size=3).astype(np.float32)
    image = np.ascontiguousarray(0.5 * base + 0.5 * smooth)
    for _ in range(rng.integers(2, 6)):
        colour = tuple(float(c) for c in rng.uniform(0, 1, size=3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(4, max(height, width) // 4))
        if rng.uniform() < 0.5:
            cv2.circle(image, (x, y), size // 2, colour, thickness=-1)
        else:
            cv2.rectangle(image, (x, y), (x + size, y + size // 2), colour, thickness=-1)
    return image


def _paint(
    rng: np.random.Generator, instances: np.ndarray, parts: np.ndarray, uv: np.ndarray
) -> Tensor:
    """Colour the labelled scene over a random background: (3, H, W) float32 in [0, 1]."""
    height, width = parts.shape
    image = _background(rng, height, width)
    tint = rng.normal(0, 0.05, size=(int(instances.max()) + 1, 3))  # [N, 3]
    fg = parts > 0
    shade = 0.75 + 0.25 * uv[0][fg, None]  # brighter towards the distal end
    image[fg] = _PART_APPEARANCE[parts[fg]] * shade + tint[instances[fg]]
    image += rng.normal(0, 0.03, size=image.shape).astype(np.float32)
    return torch.from_numpy(np.clip(image, 0, 1)).permute(2, 0, 1).contiguous()


def _sample_pixels(rng: np.random.Generator, where: np.ndarray, count: int) -> np.ndarray:
    """Flat indices of up to ``count`` distinct random pixels where ``where`` is true."""
    candidates = np.flatnonzero(where)
    return rng.choice(candidates, size=min(count, candidates.size), replace=False)


def _targets(
    rng: np.random.Generator, instances: np.ndarray, parts: np.ndarray, uv: np.ndarray
) -> DensePoseTargets:
    """Boxes and masks of the visible persons and randomly annotated points."""
    width = parts.shape[1]
    num_people = int(instances.max()) + 1
    masks = torch.from_numpy(instances[None] == np.arange(num_people)[:, None, None])
    boxes = torch.tensor([_mask_box(mask) for mask in masks.numpy()], dtype=torch.float32)
    person_pixels = [_sample_pixels(rng, instances == i, FOREGROUND_POINTS)
                     for i in range(num_people)]  # fmt: skip
    pixels = np.concatenate(
        [*person_pixels, _sample_pixels(rng, instances < 0, BACKGROUND_POINTS)]
    ).astype(np.int64)
    rows, cols = np.divmod(pixels, width)
    return DensePoseTargets(
        boxes_xyxy=boxes.reshape(num_people, 4),
        masks=masks,
        dp_masks=masks.clone(),
        has_dp=torch.ones(num_people, dtype=torch.bool),
        point_instance=torch.from_numpy(instances[rows, cols]),
        point_xy=torch.from_numpy(np.stack([cols, rows], axis=1) + 0.5).float(),
        point_part=torch.from_numpy(parts[rows, cols].astype(np.int64)),
        point_uv=torch.from_numpy(uv[:, rows, cols].T.copy()),
    )


def _mask_box(mask: np.ndarray) -> list[float]:
    """Tight ``xyxy`` box (pixel edges) of a non-empty (H, W) bool mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def render_toy_scene(
    seed: int,
    *,
    height: int = 128,
    width: int = 160,
    num_people: int | None = None,
    max_people: int = 3,
) -> ToyScene:
    """A random toy scene, identical for identical arguments.

    Args:
        seed: seeds the scene's ``numpy.random.Generator``.
        num_people: persons drawn (0 = background only); None draws 1..max_people.
            Persons left with fewer than ``MIN_VISIBLE_PIXELS`` visible pixels are removed,
            so the scene may hold fewer.
    """
    if (num_people is not None and num_people < 0) or max_people < 1:
        raise ValueError(
            f"need num_people >= 0 and max_people >= 1, got {num_people}, {max_people}"
        )
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, max_people + 1)) if num_people is None else num_people
    people = [_render_person(_stick_figure(rng, height, width), height, width)
              for _ in range(count)]  # fmt: skip
    instances, parts, uv = _visible_people(people, height, width)
    return ToyScene(
        image=_paint(rng, instances, parts, uv),
        targets=_targets(rng, instances, parts, uv),
        parts=torch.from_numpy(parts),
        uv=torch.from_numpy(uv),
        instances=torch.from_numpy(instances),
    )


def make_toy_scene(
    seed: int,
    *,
    height: int = 128,
    width: int = 160,
    num_people: int | None = None,
    max_people: int = 3,
) -> tuple[Tensor, DensePoseTargets]:
    """``render_toy_scene`` reduced to what training sees: image (3, H, W) and targets."""
    scene = render_toy_scene(
        seed, height=height, width=width, num_people=num_people, max_people=max_people
    )
    return scene.image, scene.targets


def make_toy_batch(seeds: Sequence[int], **kwargs: Any) -> tuple[Tensor, list[DensePoseTargets]]:
    """One scene per seed (same size): images (B, 3, H, W) and B targets."""
    scenes = [make_toy_scene(seed, **kwargs) for seed in seeds]
    return torch.stack([image for image, _ in scenes]), [targets for _, targets in scenes]


def ground_truth_result(scene: ToyScene) -> DensePoseResult:
    """The scene's exact labels as a ``DensePoseResult`` (scores 1), e.g. to draw them."""
    targets = scene.targets
    height, width = scene.parts.shape
    crops_parts, crops_uv = [], []
    for index, (x0, y0, x1, y1) in enumerate(
        integer_boxes(targets.boxes_xyxy, height, width).tolist()
    ):
        own = scene.instances[y0:y1, x0:x1] == index
        crops_parts.append(scene.parts[y0:y1, x0:x1] * own)
        crops_uv.append(scene.uv[:, y0:y1, x0:x1] * own)
    return DensePoseResult(
        boxes_xyxy=targets.boxes_xyxy.clone(),
        scores=torch.ones(len(targets)),
        masks=targets.masks.clone(),
        parts=crops_parts,
        uv=crops_uv,
    )


def _main() -> None:
    from model.outputs.visualize import draw_overlay, write_png

    parser = argparse.ArgumentParser(description="Write one toy scene as a PNG.")
    parser.add_argument("path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--overlay", action="store_true", help="draw the ground truth over it")
    args = parser.parse_args()
    scene = render_toy_scene(args.seed, height=args.height, width=args.width)
    image = (scene.image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    write_png(args.path, draw_overlay(image, ground_truth_result(scene)) if args.overlay else image)


if __name__ == "__main__":
    _main()
