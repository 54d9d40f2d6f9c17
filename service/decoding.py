"""Uploaded bytes -> (H, W, 3) uint8 RGB, refusing anything the model should not see.

The image header is read first (Pillow opens lazily): the format must be JPEG, PNG, WebP or
BMP and the declared pixel count within the limit before a single pixel is decoded, so a
small file declaring 100k × 100k pixels (a decompression bomb) costs nothing. Then the pixels
are decoded strictly (a truncated file is an error, not a grey half-image), the EXIF
orientation is applied, and grayscale, palette, RGBA and 16-bit images are converted to 8-bit
RGB (alpha is dropped, 16-bit values keep their 8 high bits).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import ServiceError

MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp"}
"""The image formats accepted (Pillow's names) -> the content type a raw (non-multipart)
upload of that format may declare."""
_HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def decode_image(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 RGB, upright.

    Raises:
        ServiceError: 400 ``empty_body`` / ``corrupt_image`` / ``empty_image``,
            413 ``too_many_pixels``, 415 ``unsupported_image``.
    """
    if not data:
        raise ServiceError(400, "empty_body", "the upload is empty: send one image")
    image = _open_header(data, max_pixels=max_pixels)
    try:
        image.load()
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ServiceError(
            400,
            "corrupt_image",
            f"the {image.format} image could not be decoded (truncated or corrupt): {error}",
        ) from error
    return to_rgb8(upright)


def _open_header(data: bytes, *, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=tuple(MEDIA_TYPES))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ServiceError(
            413, "too_many_pixels", f"image declares too many pixels: {error}"
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ServiceError(
            415,
            "unsupported_image",
            f"not a decodable image: expected {', '.join(MEDIA_TYPES)} "
            f"({len(data)} bytes received)",
        ) from error
    width, height = image.size
    if width * height > max_pixels:
        raise ServiceError(
            413,
            "too_many_pixels",
            f"image declares {width} × {height} = {width * height} pixels, "
            f"more than the limit of {max_pixels}",
        )
    if width == 0 or height == 0:
        raise ServiceError(400, "empty_image", f"image has no pixels ({width} × {height})")
    return image


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB; 16-bit gray keeps its 8 high bits."""
    if image.mode in _HIGH_BIT_MODES:
        gray = (np.asarray(image).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
