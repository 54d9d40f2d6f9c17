"""Clothing-like colours and textures of synthetic people, and random backgrounds.

Colours are drawn per person, so a colour says nothing about a chart: a garment's borders
(waist, sleeve and trouser ends, hair line) are drawn at random heights along the charts'
V, and its pattern (stripes, checks, blotches, or a patch of a photograph) is a function of
the rest-pose surface point, so it moves with the body and crosses chart borders.

Two styles: ``sample_outfit(rng)`` draws today's outfits (skin between two tones, any hue
for hair and clothes); with an ``AppearanceConfig`` it draws skin from the ten tones of the
Monk Skin Tone scale, natural hair colours with a hair line lower at the back of the head,
mostly neutral clothes and, with a ``BackgroundPool``, garments printed with photographs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from model.data.backgrounds import BackgroundPool, PhotoCrop, crop_pixels

_SKIN_LIGHT = np.array([0.96, 0.82, 0.72])
_SKIN_DARK = np.array([0.30, 0.19, 0.13])
_MONK_SKIN_TONES = np.array(
    [
        [0xF6, 0xED, 0xE4], [0xF3, 0xE7, 0xDB], [0xF7, 0xEA, 0xD0], [0xEA, 0xDA, 0xBA],
        [0xD7, 0xBD, 0x96], [0xA0, 0x7E, 0x56], [0x82, 0x5C, 0x43], [0x60, 0x41, 0x34],
        [0x3A, 0x31, 0x2A], [0x29, 0x24, 0x20],
    ]
) / 255.0  # fmt: skip
"""The Monk Skin Tone scale (Google, 2022), light to dark, sRGB."""
_HAIR_COLORS = np.array(
    [
        [0.05, 0.04, 0.04], [0.16, 0.10, 0.07], [0.30, 0.20, 0.12], [0.50, 0.36, 0.22],
        [0.78, 0.64, 0.42], [0.42, 0.18, 0.09], [0.58, 0.57, 0.55], [0.85, 0.84, 0.80],
    ]
)  # fmt: skip
"""Black, dark brown, brown, light brown, blond, auburn, grey, white."""
_HAIR_WEIGHTS = np.array([0.3, 0.25, 0.15, 0.08, 0.08, 0.04, 0.06, 0.04])
_TORSO, _HANDS, _FEET = (1, 2), (3, 4), (5, 6)
_UPPER_LEGS, _LOWER_LEGS = (7, 8, 9, 10), (11, 12, 13, 14)
_UPPER_ARMS, _LOWER_ARMS, _HEAD = (15, 16, 17, 18), (19, 20, 21, 22), (23, 24)
PATTERNS = ("solid", "stripes", "checks", "blotches")
TEXTURE_SIZE = 128
"""Side in pixels of the photograph patch a textured garment repeats."""


@dataclass(frozen=True)
class AppearanceConfig:
    """How the plausible style draws people (see the module docstring)."""

    photo_garments: float = 0.35
    """Probability that a garment is a photograph patch (when there is a pool)."""
    neutral_clothes: float = 0.5
    """Probability that a garment colour is a grey, black, white, beige or navy."""


@dataclass(frozen=True)
class Garment:
    """Two colours (2, 3) in [0, 1] mixed by a pattern of the rest-pose surface point, or a
    photograph patch repeated over the surface."""

    colors: np.ndarray
    pattern: str
    frequency: float
    """Cycles (of the pattern, or repeats of the patch) per unit of the surface points."""
    directions: np.ndarray
    """(3, 3) unit vectors the pattern varies along (the patch's x, y are the first two)."""
    texture: PhotoCrop | None = None
    """Photograph patch (then ``colors`` and ``pattern`` are not used)."""


@dataclass(frozen=True)
class Outfit:
    """What one person looks like. Lengths are in chart V units (see ``albedo``)."""

    skin: np.ndarray
    hair: np.ndarray
    shoes: np.ndarray
    top: Garment
    bottom: Garment
    waist: float
    """Torso V below which the bottom garment shows."""
    sleeve: float
    """0 = sleeveless, 1 = to the elbow, 2 = to the wrist."""
    trouser: float
    """Leg coverage: 1 = shorts to the knee, 2 = to the ankle."""
    hair_line: float
    """Head V above which hair shows (at the face)."""
    barefoot: bool
    hair_back: float = 0.0
    """How much lower (in V) the hair line is at the back of the head (head U = 1)."""


def _color(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(20, 255)]]])
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0] / 255.0


def _cloth_color(rng: np.random.Generator, neutral: float) -> np.ndarray:
    """Mostly neutral (grey to black/white, beige, navy) or a muted hue."""
    if rng.random() < neutral:
        tint = np.array([[0, 0, 0], [0.06, 0.03, -0.04], [-0.04, -0.02, 0.08]])[rng.integers(3)]
        return np.clip(rng.uniform(0.03, 0.92) + tint * rng.uniform(0, 2), 0, 1)
    return _color(rng) * rng.uniform(0.35, 1.0)


def _garment(
    rng: np.random.Generator,
    color: Callable[[], np.ndarray],
    photos: BackgroundPool | None = None,
    *,
    max_side: int = 0,
) -> Garment:
    """A garment of two colours drawn by ``color``, printed with a patch of ``photos``."""
    directions = rng.normal(size=(3, 3))
    colors = np.stack([color(), color()])
    pattern = PATTERNS[rng.choice(4, p=[0.4, 0.25, 0.15, 0.2])]
    frequency = float(np.exp(rng.uniform(np.log(4), np.log(40))))
    texture = None
    if photos is not None:
        texture = photos.sample_crop(rng, max_side=max_side, scale_range=(0.05, 0.4))
        frequency = float(rng.uniform(1.0, 5.0))  # 0.2-1 m per repeat of the patch
    return Garment(
        colors=colors,
        pattern=pattern,
        frequency=frequency,
        directions=directions / np.linalg.norm(directions, axis=1, keepdims=True),
        texture=texture,
    )


def sample_outfit(
    rng: np.random.Generator,
    style: AppearanceConfig | None = None,
    photos: BackgroundPool | None = None,
    *,
    max_side: int = 0,
) -> Outfit:
    """A random outfit: today's style without ``style``; ``photos`` (with ``max_side``, the
    decode size of ``load_photo``) lets the plausible style print garments with photographs."""
    if style is None:
        tone = rng.beta(1.5, 1.5)
        return Outfit(
            skin=(1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK + rng.normal(0, 0.03, 3),
            hair=_color(rng) * rng.uniform(0.1, 0.6),
            shoes=_color(rng),
            top=_garment(rng, lambda: _color(rng)),
            bottom=_garment(rng, lambda: _color(rng)),
            waist=float(rng.uniform(0.15, 0.55)),
            sleeve=float(rng.uniform(0.0, 2.1)),
            trouser=float(rng.uniform(0.6, 2.1)),
            hair_line=float(rng.uniform(0.6, 0.92)),
            barefoot=bool(rng.random() < 0.1),
        )
    scale = rng.uniform(0, len(_MONK_SKIN_TONES) - 1)
    low = int(scale)
    skin = _MONK_SKIN_TONES[low] + (scale - low) * (
        _MONK_SKIN_TONES[min(low + 1, len(_MONK_SKIN_TONES) - 1)] - _MONK_SKIN_TONES[low]
    )
    hair = _HAIR_COLORS[rng.choice(len(_HAIR_COLORS), p=_HAIR_WEIGHTS)]

    def garment() -> Garment:
        printed = photos is not None and rng.random() < style.photo_garments
        cloth = partial(_cloth_color, rng, style.neutral_clothes)
        return _garment(rng, cloth, photos if printed else None, max_side=max_side)

    return Outfit(
        skin=np.clip(skin * np.exp(rng.normal(0, 0.04, 3)), 0, 1),
        hair=np.clip(hair * np.exp(rng.normal(0, 0.1, 3)), 0, 1),
        shoes=_cloth_color(rng, 0.8) * 0.6,
        top=garment(),
        bottom=garment(),
        waist=float(rng.uniform(0.15, 0.55)),
        sleeve=float(rng.uniform(0.0, 2.1)),
        trouser=float(rng.uniform(0.6, 2.1)),
        hair_line=float(rng.uniform(0.72, 0.95)),
        barefoot=bool(rng.random() < 0.05),
        hair_back=float(rng.uniform(0.1, 0.5)),
    )


def _pattern(garment: Garment, points: np.ndarray) -> np.ndarray:
    """(Q,) weight in [0, 1] of the second colour at rest-pose points (Q, 3)."""
    phase = 2 * np.pi * garment.frequency * (points @ garment.directions.T)  # [Q, 3]
    if garment.pattern == "stripes":
        return (np.sin(phase[:, 0]) > 0).astype(np.float64)
    if garment.pattern == "checks":
        return (np.sin(phase[:, 0]) * np.sin(phase[:, 1]) > 0).astype(np.float64)
    if garment.pattern == "blotches":
        return (np.sin(phase).sum(axis=1) > 0.8).astype(np.float64)
    return np.zeros(len(points))


def _mirrored(t: np.ndarray) -> np.ndarray:
    """Coordinates in repeats -> [0, 1], mirrored at every repeat (a seamless tiling)."""
    t = np.mod(t, 2.0)
    return np.where(t > 1, 2 - t, t)


def surface_colors(garment: Garment, points: np.ndarray) -> np.ndarray:
    """(Q, 3) RGB in [0, 1] of a garment at surface points (Q, 3)."""
    if garment.texture is None:
        weight = _pattern(garment, points)[:, None]
        return (1 - weight) * garment.colors[0] + weight * garment.colors[1]
    patch = crop_pixels(garment.texture, TEXTURE_SIZE, TEXTURE_SIZE)
    coords = _mirrored(garment.frequency * (points @ garment.directions[:2].T))  # [Q, 2]
    index = np.round(coords * (TEXTURE_SIZE - 1)).astype(np.int64)
    return patch[index[:, 1], index[:, 0]].astype(np.float64)


def albedo(outfit: Outfit, parts: np.ndarray, uv: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Surface colour of Q pixels of one person.

    Args:
        parts: (Q,) chart I in 1..24.
        uv: (Q, 2) chart U, V.
        rest: (Q, 3) the rest-pose surface point of each pixel, metres.

    Returns:
        (Q, 3) RGB in [0, 1].
    """
    v = uv[:, 1]
    is_top = np.isin(parts, _TORSO) & (v >= outfit.waist)
    is_top |= np.isin(parts, _UPPER_ARMS) & (v < outfit.sleeve)
    is_top |= np.isin(parts, _LOWER_ARMS) & (v < outfit.sleeve - 1)
    is_bottom = np.isin(parts, _TORSO) & (v < outfit.waist)
    is_bottom |= np.isin(parts, _UPPER_LEGS) & (v < outfit.trouser)
    is_bottom |= np.isin(parts, _LOWER_LEGS) & (v < outfit.trouser - 1)
    out = np.tile(outfit.skin, (len(parts), 1))
    # head U is 0 at the face and 1 at the back of the head (``charts``)
    out[np.isin(parts, _HEAD) & (v + outfit.hair_back * uv[:, 0] > outfit.hair_line)] = outfit.hair
    if not outfit.barefoot:
        out[np.isin(parts, _FEET)] = outfit.shoes
    for mask, garment in ((is_top, outfit.top), (is_bottom, outfit.bottom)):
        out[mask] = surface_colors(garment, rest[mask])
    return np.clip(out, 0.0, 1.0)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]: a gradient, low-frequency noise, a floor and clutter."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    image = (1 - ramp) * _color(rng) + ramp * _color(rng)
    grid = rng.uniform(-0.25, 0.25, size=(rng.integers(2, 9), rng.integers(2, 9), 3))
    image += cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.6:
        horizon = int(rng.uniform(0.3, 0.8) * height)
        floor = np.tile(_color(rng), (height - horizon, width, 1))
        floor *= 1 + 0.15 * np.sin(xx[horizon:, :, None] * rng.uniform(5, 80))
        image[horizon:] = floor
    image = np.ascontiguousarray(np.clip(image, 0, 1).astype(np.float32))
    for _ in range(rng.integers(2, 16)):
        color = tuple(float(c) for c in _color(rng))
        center = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        size = (int(rng.uniform(4, width / 3)), int(rng.uniform(4, height / 3)))
        shape = rng.integers(3)
        if shape == 0:
            corner = (center[0] + size[0], center[1] + size[1])
            cv2.rectangle(image, center, corner, color, -1)
        elif shape == 1:
            cv2.ellipse(image, center, size, rng.uniform(0, 180), 0, 360, color, -1)
        else:
            end = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
            cv2.line(image, center, end, color, int(rng.integers(1, 12)))
    return image
