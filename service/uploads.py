"""Reading one uploaded image from a request: multipart ``file`` or a raw ``image/*`` body,
never more than the byte limit into memory."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile

from service.decoding import MEDIA_TYPES
from service.errors import ServiceError

MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room for multipart boundaries and part headers on top of the image bytes."""


def _too_large(max_bytes: int) -> ServiceError:
    return ServiceError(
        413, "upload_too_large", f"the upload is larger than the limit of {max_bytes} bytes"
    )


async def read_upload(request: Request, *, max_bytes: int) -> bytes:
    """The uploaded image's bytes (not yet validated as an image).

    Raises:
        ServiceError: 413 over the byte limit, 415 a content type that is neither multipart
            nor one of ``MEDIA_TYPES``, 400 a multipart body without a ``file`` part.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD_BYTES:
        raise _too_large(max_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        data = await _read_multipart_file(request, max_bytes=max_bytes)
    elif content_type in MEDIA_TYPES:
        data = await _read_body(request, max_bytes=max_bytes)
    else:
        raise ServiceError(
            415,
            "unsupported_media_type",
            f"content type {content_type or '(none)'!r} not accepted: send multipart/form-data "
            f"with a 'file' part, or a raw body of type {', '.join(MEDIA_TYPES)}",
        )
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return data


async def _read_body(request: Request, *, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_multipart_file(request: Request, *, max_bytes: int) -> bytes:
    async with request.form(max_files=1, max_fields=16) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ServiceError(
                400, "missing_file", "multipart upload without a file part named 'file'"
            )
        return await upload.read(max_bytes + 1)
