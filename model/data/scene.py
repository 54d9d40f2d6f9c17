"""Multi-person scenes: what is in them (``Scene``, sampled from a seed) and their rendering.

A ``Scene`` is plain numbers (poses, shapes, placements, outfits, camera, light), so scenes
can be stored, compared and interpolated (video clips); ``Renderer`` turns one into an image
with exact per-pixel labels. World: metres, Z up, ground at z = 0. Camera: looks along +Y
(people at yaw 0 face it), x right, y down in the image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from model.data.appearance import Outfit, albedo, background, sample_outfit
from model.data.body import PHENOTYPES, BodyModel
from model.data.charts import ChartAtlas
from model.data.poses import PoseSpace, rotation_matrices
from model.data.raster import rasterize

_PERSON_HEIGHT = 1.7
"""Nominal standing height (metres) used to place people at a wanted pixel height."""


@dataclass(frozen=True)
class SceneConfig:
    """What scenes to sample."""

    height: int = 384
    width: int = 512
    min_persons: int = 1
    max_persons: int = 6
    scale_range: tuple[float, float] = (0.35, 2.0)
    """Standing height of a person as a fraction of the image height (log-uniform)."""


@dataclass(frozen=True)
class Camera:
    """Pinhole camera, principal point at the image centre."""

    focal: float
    """Pixels."""
    position: np.ndarray
    """(3,) metres."""
    pitch: float
    """Radians, positive = looking down."""
    roll: float

    def rotation(self) -> np.ndarray:
        """(3, 3) world -> camera rotation (rows: image right, image down, forward)."""
        forward = np.array([0.0, np.cos(self.pitch), -np.sin(self.pitch)])
        right = np.array([1.0, 0.0, 0.0])
        down = np.cross(forward, right)
        c, s = np.cos(self.roll), np.sin(self.roll)
        return np.stack([c * right + s * down, -s * right + c * down, forward])

    def project(self, points: Tensor, height: int, width: int) -> Tensor:
        """(P, 3) world points -> (P, 3) screen x, y (pixels) and depth z (metres)."""
        rotation = torch.from_numpy(self.rotation()).float()
        cam = (points - torch.from_numpy(self.position).float()) @ rotation.T
        z = cam[:, 2].clamp(min=1e-6)
        x = self.focal * cam[:, 0] / z + width / 2
        y = self.focal * cam[:, 1] / z + height / 2
        return torch.stack([x, y, cam[:, 2]], dim=1)


@dataclass(frozen=True)
class Person:
    angles: np.ndarray
    """(D,) joint angles of ``PoseSpace``."""
    phenotype: np.ndarray
    """(6,) in [0, 1], ordered as ``body.PHENOTYPES``."""
    yaw: float
    """Radians about Z; 0 = facing the camera."""
    position: np.ndarray
    """(3,) where the body's lowest point stands (x, y on the ground, z = height above it)."""
    outfit: Outfit


@dataclass(frozen=True)
class Scene:
    persons: tuple[Person, ...]
    camera: Camera
    light: np.ndarray
    """(3,) unit direction the light travels (world)."""
    ambient: float
    diffuse: float
    background_seed: int
    noise: float
    """Std of the Gaussian pixel noise added at the end (on [0, 1] intensities)."""
    blur: float
    """Gaussian blur sigma in pixels (0 = none)."""


@dataclass
class RenderedScene:
    """An image and its exact labels.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        parts: (H, W) uint8, chart I (0 = background).
        uv: (H, W, 2) float32, U and V in [0, 1] (0 on background).
        instance: (H, W) uint8, 0 = background, i + 1 = ``scene.persons[i]``.
    """

    image: np.ndarray
    parts: np.ndarray
    uv: np.ndarray
    instance: np.ndarray


def _phenotype(rng: np.random.Generator) -> np.ndarray:
    values = rng.uniform(0.0, 1.0, size=len(PHENOTYPES))
    adult = rng.random() < 0.85
    values[PHENOTYPES.index("age")] = rng.uniform(0.4, 0.95) if adult else rng.uniform(0.05, 0.4)
    return values


def sample_scene(rng: np.random.Generator, config: SceneConfig, pose_space: PoseSpace) -> Scene:
    """A random scene: camera, light, and 0..N people standing on the ground in view."""
    fov = np.deg2rad(rng.uniform(40, 75))
    camera = Camera(
        focal=config.width / (2 * np.tan(fov / 2)),
        position=np.array([0.0, 0.0, rng.uniform(0.8, 2.4)]),
        pitch=float(np.deg2rad(rng.uniform(-5, 20))),
        roll=float(np.deg2rad(rng.uniform(-4, 4))),
    )
    count = int(rng.integers(config.min_persons, config.max_persons + 1))
    persons: list[Person] = []
    for _ in range(count):
        for _attempt in range(20):  # keep people at least 0.5 m apart on the ground
            pixels = config.height * np.exp(rng.uniform(*np.log(config.scale_range)))
            depth = camera.focal * _PERSON_HEIGHT / pixels
            half_width = config.width / 2 / camera.focal * depth
            ground = np.array([rng.uniform(-0.9, 0.9) * half_width, depth])
            if all(np.linalg.norm(ground - p.position[:2]) > 0.5 for p in persons):
                break
        facing = rng.random() < 0.6
        yaw = rng.uniform(-0.9, 0.9) if facing else rng.uniform(-np.pi, np.pi)
        persons.append(
            Person(
                angles=pose_space.sample(rng, 1)[0],
                phenotype=_phenotype(rng),
                yaw=float(yaw),
                position=np.array([*ground, rng.uniform(-0.1, 0.3)]),
                outfit=sample_outfit(rng),
            )
        )
    light = rng.normal(size=3) + np.array([0.0, 1.0, -1.5])
    return Scene(
        persons=tuple(persons),
        camera=camera,
        light=light / np.linalg.norm(light),
        ambient=float(rng.uniform(0.25, 0.6)),
        diffuse=float(rng.uniform(0.3, 0.8)),
        background_seed=int(rng.integers(2**31)),
        noise=float(rng.uniform(0.0, 0.04)),
        blur=float(rng.choice([0.0, rng.uniform(0.3, 1.2)])),
    )


def interpolate_scenes(start: Scene, end: Scene, t: float) -> Scene:
    """The scene a fraction ``t`` in [0, 1] of the way from ``start`` to ``end``.

    Poses, placements, yaw and camera move linearly; everything else is ``start``'s (the
    two scenes must hold the same people).
    """
    if len(start.persons) != len(end.persons):
        raise ValueError(f"scenes differ in persons: {len(start.persons)} vs {len(end.persons)}")

    def lerp(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (1 - t) * a + t * b

    persons = tuple(
        dataclasses.replace(
            a,
            angles=lerp(a.angles, b.angles),
            yaw=float(lerp(np.array(a.yaw), np.array(b.yaw))),
            position=lerp(a.position, b.position),
        )
        for a, b in zip(start.persons, end.persons, strict=True)
    )
    camera = dataclasses.replace(
        start.camera,
        position=lerp(start.camera.position, end.camera.position),
        pitch=float((1 - t) * start.camera.pitch + t * end.camera.pitch),
    )
    return dataclasses.replace(start, persons=persons, camera=camera)


def _vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """(V, 3) vertices, (F, 3) faces -> (V, 3) unit area-weighted vertex normals."""
    tri = vertices[faces]
    face_normals = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = torch.zeros_like(vertices).index_add_(
        0, faces.reshape(-1), face_normals.repeat_interleave(3, 0)
    )
    return torch.nn.functional.normalize(normals, dim=1)


class Renderer:
    """Renders ``Scene``s with one body model, chart atlas and pose space."""

    def __init__(self, body: BodyModel, atlas: ChartAtlas, pose_space: PoseSpace) -> None:
        self.body = body
        self.atlas = atlas
        self.pose_space = pose_space
        template = body.template
        self._rest_corners = template.rest_vertices[template.faces]  # [F, 3, 3]

    def posed_vertices(self, persons: tuple[Person, ...]) -> Tensor:
        """(N, V, 3) world vertices of the scene's people."""
        rotations = self.pose_space.rotations(np.stack([p.angles for p in persons]))
        phenotypes = torch.from_numpy(np.stack([p.phenotype for p in persons])).float()
        vertices = self.body.vertices(rotations, phenotypes)
        vertices[..., 2] -= vertices[..., 2].min(dim=1, keepdim=True).values
        yaw = rotation_matrices(np.array([[0.0, 0.0, p.yaw] for p in persons]))
        offset = np.stack([p.position for p in persons])
        return (
            vertices @ torch.from_numpy(yaw).float().transpose(1, 2)
            + torch.from_numpy(offset).float()[:, None]
        )

    def render(self, scene: Scene, height: int, width: int) -> RenderedScene:
        """The (H, W) image of a scene and its labels (deterministic for one torch thread)."""
        image = background(np.random.default_rng(scene.background_seed), height, width)
        parts = np.zeros((height, width), dtype=np.uint8)
        uv = np.zeros((height, width, 2), dtype=np.float32)
        instance = np.zeros((height, width), dtype=np.uint8)
        if scene.persons:
            self._draw_persons(scene, image, parts, uv, instance)
        if scene.blur > 0:
            image = cv2.GaussianBlur(image, (0, 0), scene.blur)
        noise = np.random.default_rng(scene.background_seed + 1).normal(0, scene.noise, image.shape)
        image = np.clip(np.round((image + noise) * 255), 0, 255).astype(np.uint8)
        return RenderedScene(image=image, parts=parts, uv=uv, instance=instance)

    def _draw_persons(
        self,
        scene: Scene,
        image: np.ndarray,
        parts: np.ndarray,
        uv: np.ndarray,
        instance: np.ndarray,
    ) -> None:
        """Rasterise, label and shade the people into the (H, W, ...) arrays in place."""
        height, width = parts.shape
        template = self.body.template
        num_faces, num_vertices = template.num_faces, template.num_vertices
        vertices = self.posed_vertices(scene.persons)  # [N, V, 3]
        count = len(vertices)
        faces = (template.faces[None] + num_vertices * torch.arange(count)[:, None, None]).reshape(
            -1, 3
        )
        points = vertices.reshape(-1, 3)
        fragments = rasterize(scene.camera.project(points, height, width), faces, height, width)
        covered = (fragments.face >= 0).numpy()
        face = fragments.face[fragments.face >= 0]
        person = (face // num_faces).numpy()
        chart = self.atlas.face_chart[face % num_faces].numpy().astype(np.uint8)
        pixel_uv = fragments.interpolate(self.atlas.corner_uv)[covered].clamp(0, 1).numpy()
        rest = fragments.interpolate(self._rest_corners)[covered].numpy()
        normals = _vertex_normals(points, faces)
        normal = torch.nn.functional.normalize(
            fragments.interpolate(normals[faces])[covered], dim=1
        )
        position = fragments.interpolate(points[faces])[covered]
        view = position - torch.from_numpy(scene.camera.position).float()
        normal = torch.where((normal * view).sum(1, keepdim=True) > 0, -normal, normal)
        lambert = (-normal @ torch.from_numpy(scene.light).float()).clamp(min=0).numpy()
        shade = (scene.ambient + scene.diffuse * lambert)[:, None]
        color = np.zeros((len(face), 3))
        for index, who in enumerate(scene.persons):
            mine = person == index
            color[mine] = albedo(who.outfit, chart[mine], pixel_uv[mine], rest[mine])
        image[covered] = np.clip(color * shade, 0, 1)
        parts[covered] = chart
        uv[covered] = pixel_uv
        instance[covered] = person + 1
