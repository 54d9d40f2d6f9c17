"""Clothing-like colours and textures of synthetic people, and random backgrounds.

Colours are drawn per person, so a colour says nothing about a chart: a garment's borders
(waist, sleeve and trouser ends, hair line) are drawn at random heights along the charts'
V, and its pattern (stripes, checks, blotches) is a function of the rest-pose surface point,
so it moves with the body and crosses chart borders.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SKIN_LIGHT = np.array([0.96, 0.82, 0.72])
_SKIN_DARK = np.array([0.30, 0.19, 0.13])
_TORSO, _HANDS, _FEET = (1, 2), (3, 4), (5, 6)
_UPPER_LEGS, _LOWER_LEGS = (7, 8, 9, 10), (11, 12, 13, 14)
_UPPER_ARMS, _LOWER_ARMS, _HEAD = (15, 16, 17, 18), (19, 20, 21, 22), (23, 24)
PATTERNS = ("solid", "stripes", "checks", "blotches")


@dataclass(frozen=True)
class Garment:
    """Two colours (2, 3) in [0, 1] mixed by a pattern of the rest-pose surface point."""

    colors: np.ndarray
    pattern: str
    frequency: float
    """Cycles per metre."""
    directions: np.ndarray
    """(3, 3) unit vectors the pattern varies along."""


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
    """Head V above which hair shows."""
    barefoot: bool


def _color(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(20, 255)]]])
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0] / 255.0


def _garment(rng: np.random.Generator) -> Garment:
    directions = rng.normal(size=(3, 3))
    return Garment(
        colors=np.stack([_color(rng), _color(rng)]),
        pattern=PATTERNS[rng.choice(4, p=[0.4, 0.25, 0.15, 0.2])],
        frequency=float(np.exp(rng.uniform(np.log(4), np.log(40)))),
        directions=directions / np.linalg.norm(directions, axis=1, keepdims=True),
    )


def sample_outfit(rng: np.random.Generator) -> Outfit:
    tone = rng.beta(1.5, 1.5)
    return Outfit(
        skin=(1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK + rng.normal(0, 0.03, 3),
        hair=_color(rng) * rng.uniform(0.1, 0.6),
        shoes=_color(rng),
        top=_garment(rng),
        bottom=_garment(rng),
        waist=float(rng.uniform(0.15, 0.55)),
        sleeve=float(rng.uniform(0.0, 2.1)),
        trouser=float(rng.uniform(0.6, 2.1)),
        hair_line=float(rng.uniform(0.6, 0.92)),
        barefoot=bool(rng.random() < 0.1),
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
    out[np.isin(parts, _HEAD) & (v > outfit.hair_line)] = outfit.hair
    if not outfit.barefoot:
        out[np.isin(parts, _FEET)] = outfit.shoes
    for mask, garment in ((is_top, outfit.top), (is_bottom, outfit.bottom)):
        weight = _pattern(garment, rest[mask])[:, None]
        out[mask] = (1 - weight) * garment.colors[0] + weight * garment.colors[1]
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
