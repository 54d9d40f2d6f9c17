"""Multi-person scenes: what is in them (``Scene``, sampled from a seed) and their rendering.

A ``Scene`` is plain numbers (poses, shapes, placements, outfits, camera, light, and paths
of the photographs it shows), so scenes can be stored, compared and interpolated (video
clips); ``Renderer`` turns one into an image with exact per-pixel labels. World: metres,
Z up, ground at z = 0. Camera: looks along +Y (people at yaw 0 face it), x right, y down in
the image.

Rendering order: the backdrop (a photograph crop, or the synthetic ``appearance.background``),
distractors behind everyone, the people's soft ground shadows, the people (z-buffered),
occluders in front (which remove the labels of the pixels they hide), then the camera
(``photometric.finish_image``). ``SceneConfig`` switches each addition; with
``backgrounds``, ``appearance``, ``distractors`` and ``photometric`` all None it samples and
renders exactly the engine's original scenes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from model.data.appearance import AppearanceConfig, Outfit, albedo, background, sample_outfit
from model.data.backgrounds import BackgroundPool, PhotoCrop, crop_pixels
from model.data.body import PHENOTYPES, BodyModel
from model.data.charts import ChartAtlas
from model.data.distractors import (
    Distractor,
    DistractorConfig,
    draw_distractor,
    sample_distractors,
)
from model.data.photometric import (
    Photometric,
    PhotometricConfig,
    finish_image,
    sample_photometric,
    soften_edges,
)
from model.data.poses import PoseSpace, rotation_matrices
from model.data.raster import Fragments, rasterize

_PERSON_HEIGHT = 1.7
"""Nominal standing height (metres) used to place people at a wanted pixel height."""
_BACKDROP_SCALE = (0.35, 1.0)
"""A backdrop's window relative to the largest of the image's aspect in the photograph."""
_SHADOW_CELL = 4
"""Ground shadows are splatted on a grid of cells of this many pixels, then blurred."""
_SPECULAR_POWER = 16.0
_MAX_PERSONS = 255
"""``RenderedScene.instance`` is uint8."""


@dataclass(frozen=True)
class SceneConfig:
    """What scenes to sample."""

    height: int = 384
    width: int = 512
    min_persons: int = 1
    max_persons: int = 6
    scale_range: tuple[float, float] = (0.35, 2.0)
    """Standing height of a person as a fraction of the image height (log-uniform)."""
    backgrounds: BackgroundPool | None = None
    """Person-free photographs for backdrops, garment prints and distractor fills; None:
    synthetic backdrops (``appearance.background``) and procedural patterns only."""
    appearance: AppearanceConfig | None = dataclasses.field(default_factory=AppearanceConfig)
    """Plausible skin, hair, clothes and coloured light with shadows; None: the original
    outfits and white Lambert light."""
    distractors: DistractorConfig | None = dataclasses.field(default_factory=DistractorConfig)
    """Shapes behind people and occluders in front; None: none."""
    photometric: PhotometricConfig | None = dataclasses.field(default_factory=PhotometricConfig)
    """Exposure, white balance, noise, motion blur, JPEG, grayscale; None: only the
    original Gaussian noise and blur."""

    @property
    def photo_side(self) -> int:
        """Photographs are decoded downscaled to this longer side: twice the image's."""
        return 2 * max(self.height, self.width)


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
class Lighting:
    """Light of the plausible style (``sample_lighting``)."""

    color: np.ndarray
    """(3,) RGB of the directional light, mean 1."""
    sky: float
    """In [0, 1]: share of the ambient light that comes from above (none from below)."""
    environment: float
    """In [0, 1]: share of the ambient light tinted with the backdrop's mean colour (the
    square root of its ratio to its grey, clipped to 0.7-1.3 per channel)."""
    specular: float
    """Strength of a Blinn-Phong highlight."""
    shadow: float
    """Darkness in [0, 1] of each person's soft shadow on the ground (0 = none)."""


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
    backdrop: PhotoCrop | None = None
    """The photograph behind the scene; None: ``appearance.background(background_seed)``."""
    distractors: tuple[Distractor, ...] = ()
    lighting: Lighting | None = None
    """None: white light, ``ambient + diffuse · Lambert``."""
    photometric: Photometric | None = None
    """Camera effects besides ``noise`` and ``blur`` (``photometric.finish_image``); None:
    none."""


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
                outfit=sample_outfit(
                    rng, config.appearance, config.backgrounds, max_side=config.photo_side
                ),
            )
        )
    light = rng.normal(size=3) + np.array([0.0, 1.0, -1.5])
    scene = Scene(
        persons=tuple(persons),
        camera=camera,
        light=light / np.linalg.norm(light),
        ambient=float(rng.uniform(0.25, 0.6)),
        diffuse=float(rng.uniform(0.3, 0.8)),
        background_seed=int(rng.integers(2**31)),
        noise=float(rng.uniform(0.0, 0.04)),
        blur=float(rng.choice([0.0, rng.uniform(0.3, 1.2)])),
    )
    forward = camera.rotation()[2]
    depths = [float((p.position - camera.position) @ forward) for p in persons]
    return dataclasses.replace(  # the additions draw after everything the original drew
        scene,
        backdrop=None
        if config.backgrounds is None
        else config.backgrounds.sample_crop(
            rng, max_side=config.photo_side, scale_range=_BACKDROP_SCALE
        ),
        lighting=None if config.appearance is None else sample_lighting(rng),
        distractors=()
        if config.distractors is None
        else sample_distractors(
            rng,
            config.distractors,
            height=config.height,
            width=config.width,
            person_depths=depths,
            photos=config.backgrounds,
            max_side=config.photo_side,
        ),
        photometric=None
        if config.photometric is None
        else sample_photometric(rng, config.photometric),
    )


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """Warm to cool light, some sky, some colour from the surroundings, maybe a shadow."""
    warm, cool = np.array([1.0, 0.86, 0.7]), np.array([0.82, 0.9, 1.0])
    color = warm + rng.uniform() * (cool - warm)
    return Lighting(
        color=color / color.mean(),
        sky=float(rng.uniform(0.0, 0.8)),
        environment=float(rng.uniform(0.2, 0.7)),
        specular=float(rng.uniform(0.0, 0.25)),
        shadow=float(rng.uniform(0.2, 0.6)) if rng.random() < 0.7 else 0.0,
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


def _normals(
    fragments: Fragments, points: Tensor, faces: Tensor, covered: np.ndarray, view: Tensor
) -> Tensor:
    """(Q, 3) unit normals at the covered pixels, turned towards the camera."""
    normals = _vertex_normals(points, faces)
    normal = torch.nn.functional.normalize(fragments.interpolate(normals[faces])[covered], dim=1)
    return torch.where((normal * view).sum(1, keepdim=True) > 0, -normal, normal)


def _shade(
    albedo: np.ndarray, scene: Scene, normal: Tensor, view: Tensor, surroundings: np.ndarray
) -> np.ndarray:
    """(Q, 3) lit colours of (Q, 3) albedos at pixels of (Q, 3) normals and view vectors."""
    lambert = (-normal @ torch.from_numpy(scene.light).float()).clamp(min=0).numpy()
    lighting = scene.lighting
    if lighting is None:  # the original white light
        return albedo * (scene.ambient + scene.diffuse * lambert)[:, None]
    tint = np.clip(np.sqrt(surroundings / max(float(surroundings.mean()), 1e-3)), 0.7, 1.3)
    ambient_color = 1 - lighting.environment + lighting.environment * tint  # [3]
    up = (normal[:, 2].numpy() + 1) / 2
    ambient = scene.ambient * (1 - lighting.sky + lighting.sky * up)  # [Q]
    to_light = -torch.from_numpy(scene.light).float()
    half = torch.nn.functional.normalize(to_light - torch.nn.functional.normalize(view, dim=1))
    gloss = (normal * half).sum(1).clamp(min=0).numpy() ** _SPECULAR_POWER * (lambert > 0)
    direct = scene.diffuse * lambert[:, None] * lighting.color
    highlight = lighting.specular * scene.diffuse * gloss[:, None] * lighting.color
    return albedo * (ambient[:, None] * ambient_color + direct) + highlight


def ground_shadow(
    points: Tensor, light: np.ndarray, camera: Camera, height: int, width: int
) -> np.ndarray:
    """(H, W) float32 in [0, 1]: the soft shadow that (P, 3) world points cast on the ground.

    Points are projected along the light onto z = 0, splatted on a grid of ``_SHADOW_CELL``
    pixel cells, closed and blurred (cheap, no self-shadowing). Zero for light from below.
    """
    if light[2] > -0.05:
        return np.zeros((height, width), dtype=np.float32)
    direction = torch.from_numpy(light).float()
    on_ground = points - (points[:, 2:3] / direction[2]) * direction  # [P, 3]
    screen = camera.project(on_ground, height, width).numpy()
    rows, cols = -(-height // _SHADOW_CELL), -(-width // _SHADOW_CELL)
    cell = np.floor(screen[:, :2] / _SHADOW_CELL).astype(np.int64)
    keep = (screen[:, 2] > 0.1) & (cell[:, 0] >= 0) & (cell[:, 0] < cols)
    keep &= (cell[:, 1] >= 0) & (cell[:, 1] < rows)
    hits = np.zeros((rows, cols), dtype=np.float32)
    hits[cell[keep, 1], cell[keep, 0]] = 1.0
    closed = cv2.morphologyEx(hits, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    soft = cv2.GaussianBlur(closed, (0, 0), 1.5)
    shadow = cv2.resize(soft, (cols * _SHADOW_CELL, rows * _SHADOW_CELL))[:height, :width]
    return np.clip(shadow, 0, 1)


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
        if scene.backdrop is None:
            image = background(np.random.default_rng(scene.background_seed), height, width)
        else:
            image = crop_pixels(scene.backdrop, height, width)
        segments = np.zeros((height, width), dtype=np.uint16)  # 0 backdrop, then objects
        behind = [d for d in scene.distractors if math.isinf(d.depth)]
        for index, distractor in enumerate(behind, start=_MAX_PERSONS + 1):
            segments[draw_distractor(image, distractor)] = index
        parts = np.zeros((height, width), dtype=np.uint8)
        uv = np.zeros((height, width, 2), dtype=np.float32)
        instance = np.zeros((height, width), dtype=np.uint8)
        depth = np.full((height, width), np.inf, dtype=np.float32)
        if scene.persons:
            self._draw_persons(scene, image, parts, uv, instance, depth)
            segments[instance > 0] = instance[instance > 0]
        occluders = sorted(
            (d for d in scene.distractors if not math.isinf(d.depth)), key=lambda d: -d.depth
        )  # far to near
        for index, distractor in enumerate(occluders, start=_MAX_PERSONS + 1 + len(behind)):
            hidden = draw_distractor(image, distractor, depth)
            parts[hidden], uv[hidden], instance[hidden] = 0, 0, 0
            segments[hidden] = index
        if scene.photometric is not None:
            image = soften_edges(image, segments, scene.photometric.edge_blur)
        image = finish_image(
            image,
            blur=scene.blur,
            noise=scene.noise,
            rng=np.random.default_rng(scene.background_seed + 1),
            camera=scene.photometric,
        )
        return RenderedScene(image=image, parts=parts, uv=uv, instance=instance)

    def _draw_persons(
        self,
        scene: Scene,
        image: np.ndarray,
        parts: np.ndarray,
        uv: np.ndarray,
        instance: np.ndarray,
        depth: np.ndarray,
    ) -> None:
        """Rasterise, label and shade the people into the (H, W, ...) arrays in place
        (``depth``: metres along the optical axis), after darkening their ground shadows."""
        height, width = parts.shape
        template = self.body.template
        num_faces, num_vertices = template.num_faces, template.num_vertices
        vertices = self.posed_vertices(scene.persons)  # [N, V, 3]
        count = len(vertices)
        faces = (template.faces[None] + num_vertices * torch.arange(count)[:, None, None]).reshape(
            -1, 3
        )
        points = vertices.reshape(-1, 3)
        surroundings = image.reshape(-1, 3).mean(axis=0)  # [3], before people and shadows
        if scene.lighting is not None and scene.lighting.shadow > 0:
            shadow = ground_shadow(points, scene.light, scene.camera, height, width)
            image *= 1 - scene.lighting.shadow * shadow[..., None]
        fragments = rasterize(scene.camera.project(points, height, width), faces, height, width)
        covered = (fragments.face >= 0).numpy()
        face = fragments.face[fragments.face >= 0]
        person = (face // num_faces).numpy()
        chart = self.atlas.face_chart[face % num_faces].numpy().astype(np.uint8)
        pixel_uv = fragments.interpolate(self.atlas.corner_uv)[covered].clamp(0, 1).numpy()
        rest = fragments.interpolate(self._rest_corners)[covered].numpy()
        color = np.zeros((len(face), 3))
        for index, who in enumerate(scene.persons):
            mine = person == index
            color[mine] = albedo(who.outfit, chart[mine], pixel_uv[mine], rest[mine])
        position = fragments.interpolate(points[faces])[covered]
        view = position - torch.from_numpy(scene.camera.position).float()
        normal = _normals(fragments, points, faces, covered, view)
        image[covered] = np.clip(_shade(color, scene, normal, view, surroundings), 0, 1)
        parts[covered] = chart
        uv[covered] = pixel_uv
        instance[covered] = person + 1
        forward = torch.from_numpy(scene.camera.rotation()[2]).float()
        depth[covered] = (view @ forward).numpy()
