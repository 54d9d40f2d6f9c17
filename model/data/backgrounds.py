"""Photographs with nobody in them, as backgrounds and texture patches of synthetic scenes.

The engine does not know where the photographs come from: the caller hands in image file
paths (``BackgroundPool.from_paths``). A scene stores what it takes from a photograph as a
``PhotoCrop`` (plain numbers and a path), so scenes stay data; ``crop_pixels`` turns a crop
into pixels. Photographs are decoded once per process and kept downscaled to ``max_side``
(about 2 × the scene's larger side: ~1.8 MB per photograph for 512 × 384 scenes), at most
``_CACHED_PHOTOS`` of them (the least recently used leave first).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
"""Image files OpenCV decodes (``.svg`` and ``.jxl`` are not among them)."""
_CACHED_PHOTOS = 256


@dataclass(frozen=True)
class PhotoCrop:
    """An axis-aligned window of one photograph, independent of the photograph's size.

    The window has the aspect ratio of the output; ``scale`` is its size relative to the
    largest such window that fits in the photograph, ``x``, ``y`` in [0, 1] where it sits in
    the room left (0 = left/top edge, 1 = right/bottom edge).
    """

    path: str
    max_side: int
    """The photograph is decoded downscaled to at most this many pixels on its longer side."""
    scale: float
    x: float
    y: float
    flip: bool
    """Mirror left-right."""


@dataclass(frozen=True)
class BackgroundPool:
    """Person-free photographs by file path (decoded lazily, once per process)."""

    paths: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("a background pool needs at least one photograph, got none")

    @staticmethod
    def from_paths(paths: Iterable[str | Path]) -> BackgroundPool:
        """A pool of the image files ``paths`` (checked to exist and to be decodable types)."""
        checked = []
        for path in paths:
            file = Path(path)
            if file.suffix.lower() not in SUFFIXES:
                raise ValueError(f"{file}: expected an image file ({', '.join(SUFFIXES)})")
            if not file.is_file():
                raise FileNotFoundError(f"{file}: no such photograph")
            checked.append(str(file))
        return BackgroundPool(tuple(checked))

    @staticmethod
    def from_directory(root: str | Path) -> BackgroundPool:
        """A pool of every image file (``SUFFIXES``) under ``root``, in sorted order."""
        files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in SUFFIXES)
        if not files:
            raise ValueError(f"{root}: no image files ({', '.join(SUFFIXES)}) under it")
        return BackgroundPool.from_paths(files)

    def __len__(self) -> int:
        return len(self.paths)

    def sample_crop(
        self, rng: np.random.Generator, *, max_side: int, scale_range: tuple[float, float]
    ) -> PhotoCrop:
        """A random window of a random photograph: size log-uniform in ``scale_range``."""
        return PhotoCrop(
            path=self.paths[int(rng.integers(len(self.paths)))],
            max_side=max_side,
            scale=float(np.exp(rng.uniform(*np.log(scale_range)))),
            x=float(rng.uniform()),
            y=float(rng.uniform()),
            flip=bool(rng.random() < 0.5),
        )


@lru_cache(maxsize=_CACHED_PHOTOS)
def load_photo(path: str, max_side: int) -> np.ndarray:
    """(h, w, 3) uint8 RGB of an image file, downscaled (area) to at most ``max_side``."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: missing or not an image OpenCV can decode")
    height, width = bgr.shape[:2]
    factor = max_side / max(height, width)
    if factor < 1:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb.setflags(write=False)  # shared by every caller in this process
    return rgb


def crop_pixels(crop: PhotoCrop, height: int, width: int) -> np.ndarray:
    """(height, width, 3) float32 RGB in [0, 1]: the crop's window resized to the output."""
    photo = load_photo(crop.path, crop.max_side)
    rows, cols = photo.shape[:2]
    fit = min(cols / width, rows / height)  # photo pixels per output pixel of the largest window
    win_w = max(1, min(cols, round(width * fit * crop.scale)))
    win_h = max(1, min(rows, round(height * fit * crop.scale)))
    x0 = round(crop.x * (cols - win_w))
    y0 = round(crop.y * (rows - win_h))
    window = photo[y0 : y0 + win_h, x0 : x0 + win_w]
    shrink = win_w > width
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out = cv2.resize(window, (width, height), interpolation=interpolation)
    if crop.flip:
        out = out[:, ::-1]
    return np.ascontiguousarray(out, dtype=np.float32) / 255.0
