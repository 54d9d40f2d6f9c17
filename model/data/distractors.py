"""Things that are not people: textured flat shapes behind people, and occluders in front.

A ``Distractor`` is a polygon in image coordinates (boxes, ellipses, star-shaped polygons,
long thin bars like poles and railings) filled with a photograph patch or a procedural
pattern, at a depth: ``math.inf`` draws it on the backdrop, behind everyone; a finite depth
(metres along the optical axis) is a card facing the camera that hides whatever is farther
(``draw_distractor`` with the depth map). The renderer removes the labels of hidden pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from model.data.appearance import PATTERNS, Garment, surface_colors
from model.data.backgrounds import BackgroundPool, PhotoCrop, crop_pixels

SHAPES = ("box", "ellipse", "polygon", "bar")
_SUBPIXEL_BITS = 4
"""Fixed-point bits of the polygon vertices given to ``cv2.fillPoly``."""


@dataclass(frozen=True)
class DistractorConfig:
    """How many distractors, how large, how filled."""

    behind: tuple[int, int] = (0, 4)
    """Count range (inclusive) of shapes drawn behind everyone."""
    front: tuple[int, int] = (0, 2)
    """Count range (inclusive) of occluders at a depth among or before the people."""
    size: tuple[float, float] = (0.08, 0.5)
    """Longest extent of a shape behind, as a fraction of the image's larger side
    (log-uniform)."""
    front_size: tuple[float, float] = (0.05, 0.35)
    """The same for occluders."""
    photo_fill: float = 0.7
    """Probability of a photograph fill (when there is a pool), else a pattern."""


@dataclass(frozen=True)
class Distractor:
    polygon: np.ndarray
    """(P, 2) float64 vertices (x / width, y / height): fractions of the image size."""
    depth: float
    """Metres along the optical axis; ``math.inf`` = behind everyone."""
    pattern: Garment
    """Procedural fill over image coordinates in units of the image's larger side."""
    photo: PhotoCrop | None
    """A photograph fill stretched over the shape's box (then ``pattern`` is not used)."""
    shading: np.ndarray
    """(3,) brightness = s0 + s1·x + s2·y, x, y in [-0.5, 0.5] across the shape's box."""


def _outline(rng: np.random.Generator, shape: str, extent: float) -> np.ndarray:
    """(P, 2) vertices around (0, 0), longest extent ``extent`` (pixels)."""
    if shape == "bar":
        thickness = rng.uniform(0.03, 0.12) * extent
        corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
        points = corners * np.array([thickness, extent * rng.uniform(1.5, 3.0)])
    elif shape == "box":
        corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
        points = corners * extent * np.array([1.0, rng.uniform(0.3, 1.0)])
    else:
        count = 32 if shape == "ellipse" else int(rng.integers(3, 10))
        angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
        if shape == "polygon":
            angles = np.sort(rng.uniform(0, 2 * np.pi, count))
            radii = rng.uniform(0.3, 0.5, count) * extent
        else:
            radii = np.full(count, 0.5 * extent)
        points = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]
        if shape == "ellipse":
            points[:, 1] *= rng.uniform(0.3, 1.0)
    angle = rng.uniform(0, np.pi) if shape != "bar" else rng.normal(0, 0.3)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ rotation.T


def sample_distractors(
    rng: np.random.Generator,
    config: DistractorConfig,
    *,
    height: int,
    width: int,
    person_depths: list[float],
    photos: BackgroundPool | None,
    max_side: int,
) -> tuple[Distractor, ...]:
    """Shapes behind everyone, then occluders in front (at depths up to the farthest person).

    Args:
        person_depths: the people's distances along the optical axis (metres), maybe empty.
        photos: the pool of photograph fills (None: patterns only); ``max_side`` its decode
            size.
    """
    behind = int(rng.integers(config.behind[0], config.behind[1] + 1))
    front = int(rng.integers(config.front[0], config.front[1] + 1))
    far = max(person_depths, default=4.0)
    out = []
    for index in range(behind + front):
        shape = SHAPES[int(rng.choice(len(SHAPES), p=[0.3, 0.25, 0.25, 0.2]))]
        sizes = config.size if index < behind else config.front_size
        extent = float(np.exp(rng.uniform(*np.log(sizes)))) * max(height, width)
        centre = rng.uniform(0, 1, size=2) * np.array([width, height])
        polygon = (_outline(rng, shape, extent) + centre) / np.array([width, height])
        directions = rng.normal(size=(3, 3))
        fill = Garment(
            colors=rng.uniform(0.05, 0.95, size=(2, 3)),
            pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
            frequency=float(np.exp(rng.uniform(np.log(2), np.log(30)))),
            directions=directions / np.linalg.norm(directions, axis=1, keepdims=True),
        )
        photo = None
        if photos is not None and rng.random() < config.photo_fill:
            photo = photos.sample_crop(rng, max_side=max_side, scale_range=(0.1, 0.6))
        depth = math.inf if index < behind else float(rng.uniform(0.4, far))
        shading = np.array([rng.uniform(0.6, 1.1), *rng.uniform(-0.4, 0.4, size=2)])
        out.append(Distractor(polygon, depth, fill, photo, shading))
    return tuple(out)


def polygon_mask(distractor: Distractor, height: int, width: int) -> np.ndarray:
    """(H, W) bool: pixel centres inside the distractor's polygon."""
    pixels = distractor.polygon * np.array([width, height]) - 0.5  # OpenCV: centres at integers
    vertices = np.round(pixels * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [vertices], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return mask.astype(bool)


def fill_colors(distractor: Distractor, box: tuple[int, int, int, int], side: int) -> np.ndarray:
    """(h, w, 3) float32 RGB of the distractor over the pixel box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    if distractor.photo is not None:
        colors = crop_pixels(distractor.photo, h, w)
    else:
        ys, xs = np.mgrid[y0:y1, x0:x1] / side
        points = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).reshape(-1, 3)
        colors = surface_colors(distractor.pattern, points).reshape(h, w, 3).astype(np.float32)
    gy, gx = np.mgrid[0:h, 0:w]
    s0, sx, sy = distractor.shading
    shade = s0 + sx * ((gx + 0.5) / w - 0.5) + sy * ((gy + 0.5) / h - 0.5)
    return np.clip(colors * shade[..., None].astype(np.float32), 0.0, 1.0)


def draw_distractor(
    image: np.ndarray, distractor: Distractor, depth: np.ndarray | None = None
) -> np.ndarray:
    """Paint a distractor into ``image`` (H, W, 3) float32 in place; return the (H, W) bool
    pixels it took.

    With ``depth`` ((H, W) float metres along the optical axis, ``inf`` where nothing is),
    only pixels farther than the distractor are taken, and ``depth`` is updated there.
    """
    height, width = image.shape[:2]
    drawn = polygon_mask(distractor, height, width)
    if depth is not None:
        drawn &= depth > distractor.depth
        depth[drawn] = distractor.depth
    if not drawn.any():
        return drawn
    ys, xs = np.nonzero(drawn)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    colors = fill_colors(distractor, box, max(height, width))
    inside = drawn[box[1] : box[3], box[0] : box[2]]
    image[box[1] : box[3], box[0] : box[2]][inside] = colors[inside]
    return drawn
