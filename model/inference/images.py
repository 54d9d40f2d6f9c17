"""Encoded images -> (H, W, 3) uint8 RGB, refusing anything the network should not see: the
one rule of the command line and the service.

The header is read first (Pillow opens lazily): the format must be one of ``IMAGE_FORMATS``
and the declared pixel count within the limit before a single pixel is decoded, so a small
file declaring 100k × 100k pixels (a decompression bomb) costs nothing. Then the pixels are
decoded strictly (a truncated file is an error, not a grey half-image), the EXIF orientation
is applied, and grayscale, palette, RGBA and 16-bit images are converted to 8-bit RGB (alpha
is dropped, 16-bit values keep their 8 high bits). numpy and Pillow only: no torch.

``decode_image_bounded`` also bounds the decoded size (the service's ``max_image_side``): an
image longer than that is downscaled to it, a JPEG by its decoder already (Pillow's
``draft``: the DCT decoded at 1/2, 1/4 or 1/8 scale, so a 33-megapixel photo never exists at
full size in memory), then resized (bilinear, antialiased) to exactly that size.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
"""The image formats accepted (Pillow's names)."""
ImageProblem = Literal[
    "unreadable", "empty", "unsupported", "too_many_pixels", "no_pixels", "corrupt"
]
_HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
"""EXIF orientations that swap width and height (``ImageOps.exif_transpose``)."""


class ImageError(ValueError):
    """Bytes or a file that is not an image this project reads; ``problem`` says why."""

    def __init__(self, problem: ImageProblem, message: str) -> None:
        super().__init__(message)
        self.problem: ImageProblem = problem


@dataclass(frozen=True)
class DecodedImage:
    """An image as decoded, and the size it was encoded at.

    Attributes:
        rgb: (h, w, 3) uint8 RGB, upright; (H, W) itself unless it was downscaled.
        original_size: (H, W), the upright size of the encoded image.
    """

    rgb: np.ndarray
    original_size: tuple[int, int]

    @property
    def downscaled(self) -> bool:
        return self.rgb.shape[:2] != self.original_size


def bounded_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) scaled down so that the longer side is ``max_side`` (itself when it is
    within that, or ``max_side`` is None); each side at least 1."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(round(height * scale), 1), max(round(width * scale), 1)


def decode_image_bounded(
    data: bytes, *, max_pixels: int | None = None, max_side: int | None = None
) -> DecodedImage:
    """Encoded image bytes -> upright RGB, at most ``max_side`` pixels on its longer side
    (``bounded_size``; None: full size).

    Raises:
        ImageError: ``empty`` (no bytes), ``unsupported`` (not one of ``IMAGE_FORMATS``),
            ``too_many_pixels`` (more than ``max_pixels``, or a decompression bomb),
            ``no_pixels`` (0 × W), ``corrupt`` (truncated or broken pixel data).
    """
    if not data:
        raise ImageError("empty", "no bytes: an empty file or upload")
    image = _open_header(data, max_pixels=max_pixels)
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation)  # a PNG loads for this
        transposed = orientation in _TRANSPOSING_ORIENTATIONS
        width, height = image.size[::-1] if transposed else image.size  # upright
        target = bounded_size(height, width, max_side)  # upright (h, w)
        if target != (height, width) and image.format == "JPEG":
            stored_wh = target if transposed else target[::-1]
            image.draft(image.mode, stored_wh)  # the largest 1/2^k scale at least that size
        image.load()
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(
            "corrupt",
            f"the {image.format} image could not be decoded (truncated or corrupt): {error}",
        ) from error
    rgb = to_rgb8(upright)
    if rgb.shape[:2] != target:
        resized = Image.fromarray(rgb).resize(target[::-1], Image.Resampling.BILINEAR)
        rgb = np.asarray(resized, dtype=np.uint8).copy()
    return DecodedImage(rgb, (height, width))


def decode_image_rgb(data: bytes, *, max_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 RGB, upright, at full size
    (``decode_image_bounded``'s errors)."""
    return decode_image_bounded(data, max_pixels=max_pixels).rgb


def read_image_rgb(path: Path, *, max_pixels: int | None = None) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB: ``decode_image_rgb`` of its bytes; a file that
    cannot be read (missing, a directory, no permission) is ``unreadable``."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ImageError("unreadable", f"cannot be read: {error.strerror or error}") from error
    return decode_image_rgb(data, max_pixels=max_pixels)


def _open_header(data: bytes, *, max_pixels: int | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError("too_many_pixels", f"image declares too many pixels: {error}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(
            "unsupported",
            f"not a decodable image: expected {', '.join(IMAGE_FORMATS)} "
            f"({len(data)} bytes received)",
        ) from error
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            "too_many_pixels",
            f"image declares {width} × {height} = {width * height} pixels, "
            f"more than the limit of {max_pixels}",
        )
    if width == 0 or height == 0:
        raise ImageError("no_pixels", f"image has no pixels ({width} × {height})")
    return image


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB; 16-bit gray keeps its 8 high bits."""
    if image.mode in _HIGH_BIT_MODES:
        gray = (np.asarray(image).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
