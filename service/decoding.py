"""Uploaded bytes -> upright RGB by the rule of ``model.inference.images`` (header first, then
a strict decode: the same rule ``ddp predict`` applies to files), at most ``max_image_side``
pixels long (a larger image is downscaled as it decodes), its refusals as HTTP errors."""

from __future__ import annotations

from model.inference.images import (
    IMAGE_FORMATS,
    DecodedImage,
    ImageError,
    ImageProblem,
    decode_image_bounded,
)
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


def decode_image(data: bytes, *, max_pixels: int, max_side: int | None = None) -> DecodedImage:
    """Encoded image bytes -> upright RGB, downscaled to ``max_side`` on its longer side if
    it is longer (None: full size).

    Raises:
        ServiceError: 400 ``empty_body`` / ``corrupt_image`` / ``empty_image``,
            413 ``too_many_pixels``, 415 ``unsupported_image``.
    """
    if not data:
        raise ServiceError(400, "empty_body", "the upload is empty: send one image")
    try:
        return decode_image_bounded(data, max_pixels=max_pixels, max_side=max_side)
    except ImageError as error:
        status, code = _ERRORS[error.problem]
        raise ServiceError(status, code, str(error)) from error
