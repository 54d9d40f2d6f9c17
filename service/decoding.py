"""Uploaded bytes -> (H, W, 3) uint8 RGB by the rule of ``model.inference.images`` (header
first, then a strict decode: the same rule ``ddp predict`` applies to files), its refusals as
HTTP errors."""

from __future__ import annotations

import numpy as np

from model.inference.images import IMAGE_FORMATS, ImageError, ImageProblem, decode_image_rgb
from service.errors import ServiceError

MEDIA_TYPES = {name: f"image/{name.lower()}" for name in IMAGE_FORMATS}
"""The image formats accepted (Pillow's names) -> the content type a raw (non-multipart)
upload of that format may declare: image/jpeg, image/png, image/webp, image/bmp."""
RAW_MEDIA_TYPES = (*MEDIA_TYPES.values(), "application/octet-stream")
"""Content types a raw (non-multipart) image upload may declare; the bytes decide the format."""
_ERRORS: dict[ImageProblem, tuple[int, str]] = {
    "empty": (400, "empty_body"),
    "unsupported": (415, "unsupported_image"),
    "too_many_pixels": (413, "too_many_pixels"),
    "no_pixels": (400, "empty_image"),
    "corrupt": (400, "corrupt_image"),
}
"""Each problem of an upload -> HTTP status and error code (an upload is never ``unreadable``)."""


def decode_image(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 RGB, upright.

    Raises:
        ServiceError: 400 ``empty_body`` / ``corrupt_image`` / ``empty_image``,
            413 ``too_many_pixels``, 415 ``unsupported_image``.
    """
    if not data:
        raise ServiceError(400, "empty_body", "the upload is empty: send one image")
    try:
        return decode_image_rgb(data, max_pixels=max_pixels)
    except ImageError as error:
        status, code = _ERRORS[error.problem]
        raise ServiceError(status, code, str(error)) from error
