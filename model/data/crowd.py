"""Crowd scenes: N persons of the body model on a grid, each covering a chosen share of the image.

The scenes of the persons-per-image benchmark (``benchmarks.persons``) and of the load tests'
images (``load_tests.make_images``). N persons stand on a grid of cells (rows chosen to give
each cell the most room, :func:`grid_shape`), one person per cell, centred, not overlapping, at
the same depth in a row of tiers (people may stand above the ground, as on stairs), in front of
the same background for every N. Person i is the same body, pose and outfit in every scene.
Each person's visible area is set to a target (depth solved over up to ``RENDER_PASSES``
renders); a person too wide or tall for its cell is shrunk to fit and the scene says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from model.data.appearance import sample_outfit
from model.data.body import PHENOTYPES
from model.data.labels import mask_boxes, person_masks
from model.data.scene import Camera, Person, Renderer, Scene

CAMERA_HEIGHT_M = 1.5
FIELD_OF_VIEW_DEG = 50.0
ASSUMED_ASPECT = 0.6
"""Box width / height assumed for a person when choosing the grid."""
CELL_FILL = 0.9
"""A person's box takes at most this share of its cell's height and width."""
POSE_ACTIVITY = 0.7
"""Sampled joint angles are scaled by this: calmer poses fit their cells."""
AREA_TOLERANCE = 0.03
"""Renders stop once every person's area is within this relative error of its target."""
RENDER_PASSES = 3
AREA_PER_HEIGHT2 = 0.16
"""First guess of a person's visible area over its box height squared."""


def grid_shape(persons: int, height: int, width: int) -> tuple[int, int]:
    """(rows, columns) for ``persons`` cells giving a person of ``ASSUMED_ASPECT`` the
    tallest box (fewer rows on ties); (0, 0) for no persons."""
    if persons == 0:
        return 0, 0

    def room(rows: int) -> tuple[float, int]:
        cols = math.ceil(persons / rows)
        return min(height / rows, width / cols / ASSUMED_ASPECT), -rows

    rows = max(range(1, persons + 1), key=room)
    return rows, math.ceil(persons / rows)


@dataclass
class Crowd:
    """One rendered scene of N persons.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        instance: (H, W) uint8, 0 = background, i + 1 = person i.
        boxes_xyxy: (N, 4) float32, the persons' visible boxes in pixels.
        person_fractions: (N,) float64, each person's visible area / image area.
        target_fraction: the area each person was meant to cover.
        shrunk: (N,) bool, persons made smaller than the target to fit their cells.
    """

    image: np.ndarray
    instance: np.ndarray
    boxes_xyxy: np.ndarray
    person_fractions: np.ndarray
    target_fraction: float
    shrunk: np.ndarray

    @property
    def persons(self) -> int:
        return len(self.boxes_xyxy)

    @property
    def foreground_fraction(self) -> float:
        return float((self.instance > 0).mean())


class CrowdBuilder:
    """Scenes of N persons at a given visible area each (module docstring)."""

    def __init__(self, renderer: Renderer, *, height: int, width: int, seed: int = 0) -> None:
        self.renderer = renderer
        self.height, self.width = height, width
        self.seed = seed
        self.camera = Camera(
            focal=width / (2 * math.tan(math.radians(FIELD_OF_VIEW_DEG) / 2)),
            position=np.array([0.0, 0.0, CAMERA_HEIGHT_M]),
            pitch=0.0,
            roll=0.0,
        )

    def person(self, index: int) -> Person:
        """Person ``index``: the same in every scene (seeded by (seed, index)); an adult of
        middling height, facing the camera within ±30°; position set later."""
        rng = np.random.default_rng([self.seed, index])
        phenotype = rng.uniform(0.0, 1.0, size=len(PHENOTYPES))
        phenotype[PHENOTYPES.index("age")] = rng.uniform(0.5, 0.9)
        phenotype[PHENOTYPES.index("height")] = rng.uniform(0.35, 0.65)
        return Person(
            angles=POSE_ACTIVITY * self.renderer.pose_space.sample(rng, 1)[0],
            phenotype=phenotype,
            yaw=float(rng.uniform(-0.5, 0.5)),
            position=np.zeros(3),
            outfit=sample_outfit(rng),
        )

    def scene(self, persons: Sequence[Person]) -> Scene:
        return Scene(
            persons=tuple(persons),
            camera=self.camera,
            light=np.array([0.3, 0.6, -0.74]),
            ambient=0.45,
            diffuse=0.55,
            background_seed=self.seed,
            noise=0.01,
            blur=0.0,
        )

    def cells(self, persons: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) cell centres (x, y) in pixels, row by row; (2,) cell size (w, h)."""
        rows, cols = grid_shape(persons, self.height, self.width)
        if persons == 0:
            return np.zeros((0, 2)), np.zeros(2)
        size = np.array([self.width / cols, self.height / rows])
        index = np.arange(persons)
        centres = np.stack([index % cols + 0.5, index // cols + 0.5], axis=1) * size
        return centres, size

    def _boxes(self, local: Tensor, positions: np.ndarray) -> np.ndarray:
        """(N, 4) pixel boxes (x0, y0, x1, y1) of the persons' projected vertices."""
        world = local + torch.from_numpy(positions).float()[:, None]
        screen = self.camera.project(world.reshape(-1, 3), self.height, self.width)
        xy = screen[:, :2].reshape(len(local), -1, 2)
        return torch.cat([xy.amin(1), xy.amax(1)], dim=1).double().numpy()

    def _place(self, local: Tensor, depth: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """(N, 3) positions putting each person, at its depth, centred on its cell centre."""
        positions = np.zeros((len(local), 3))
        positions[:, 1] = depth
        z = local[..., 2]
        positions[:, 2] = CAMERA_HEIGHT_M - 0.5 * (z.amin(1) + z.amax(1)).double().numpy()
        for _ in range(4):  # the projection is nearly linear in the offsets: a few steps
            boxes = self._boxes(local, positions)
            error = centres - 0.5 * (boxes[:, :2] + boxes[:, 2:])
            positions[:, 0] += error[:, 0] * depth / self.camera.focal
            positions[:, 2] -= error[:, 1] * depth / self.camera.focal
        return positions

    def _fit(
        self, local: Tensor, depth: np.ndarray, centres: np.ndarray, cell: np.ndarray
    ) -> np.ndarray:
        """Depths, pushed back where a person's box exceeds ``CELL_FILL`` of its cell."""
        boxes = self._boxes(local, self._place(local, depth, centres))
        extent = boxes[:, 2:] - boxes[:, :2]  # [N, 2] (w, h)
        return depth * np.maximum(1.0, (extent / (CELL_FILL * cell)).max(1))

    def build(self, persons: int, fraction: float) -> Crowd:
        """``persons`` persons, each covering ``fraction`` of the image (where they fit)."""
        if persons < 0 or not 0.0 < fraction < 1.0:
            raise ValueError(f"need persons >= 0 and 0 < fraction < 1, got {persons}, {fraction}")
        people = [self.person(i) for i in range(persons)]
        if persons == 0:
            rendered = self.renderer.render(self.scene([]), self.height, self.width)
            empty = np.zeros(0)
            return Crowd(
                rendered.image, rendered.instance, np.zeros((0, 4), np.float32), empty, fraction,
                empty.astype(bool),
            )  # fmt: skip
        local = self.renderer.posed_vertices(tuple(people))  # [N, V, 3], lowest point at z = 0
        centres, cell = self.cells(persons)
        target = fraction * self.height * self.width
        z_extent = (local[..., 2].amax(1) - local[..., 2].amin(1)).double().numpy()
        depth = self.camera.focal * z_extent / math.sqrt(target / AREA_PER_HEIGHT2)
        for attempt in range(RENDER_PASSES):
            fitted = self._fit(local, depth, centres, cell)
            positions = self._place(local, fitted, centres)
            placed = [
                dataclasses.replace(p, position=q) for p, q in zip(people, positions, strict=True)
            ]
            rendered = self.renderer.render(self.scene(placed), self.height, self.width)
            masks = person_masks(rendered.instance, persons)
            areas = masks.sum((1, 2)).astype(np.float64)
            shrunk = fitted > depth * (1 + 1e-9)
            close = np.abs(areas / target - 1) <= AREA_TOLERANCE
            if (close | shrunk).all() or attempt == RENDER_PASSES - 1:
                break
            depth = fitted * np.sqrt(np.maximum(areas, 1.0) / target)
        return Crowd(
            image=rendered.image,
            instance=rendered.instance,
            boxes_xyxy=mask_boxes(masks),
            person_fractions=areas / (self.height * self.width),
            target_fraction=fraction,
            shrunk=shrunk,
        )
