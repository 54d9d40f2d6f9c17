"""Reading an upload from a request, as the image and video routes both take it: a multipart
``file`` part or a raw body of an accepted content type, never past the byte limit. Here: what
they share (the content type check, the errors, the OpenAPI request body), and one uploaded
image read into memory."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Collection
from typing import Any, Literal

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from service.decoding import RAW_MEDIA_TYPES
from service.errors import ServiceError

MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room for multipart boundaries and part headers on top of the uploaded file's bytes."""


def too_large(max_bytes: int) -> ServiceError:
    return ServiceError(
        413, "upload_too_large", f"the upload is larger than the limit of {max_bytes} bytes"
    )


def upload_kind(
    request: Request, *, max_bytes: int, media_types: Collection[str]
) -> Literal["multipart", "raw"]:
    """How the upload is sent: multipart, or a raw body of one of ``media_types``.

    Raises:
        ServiceError: 413 when the declared length is over the limit, 415 for any other
            content type.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD_BYTES:
        raise too_large(max_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return "multipart"
    if content_type in media_types:
        return "raw"
    raise ServiceError(
        415,
        "unsupported_media_type",
        f"content type {content_type or '(none)'!r} not accepted: send multipart/form-data "
        f"with a 'file' part, or a raw body of type {', '.join(media_types)}",
    )


async def limited(chunks: AsyncIterator[bytes], max_bytes: int) -> AsyncGenerator[bytes, None]:
    """``chunks`` as they come, until more than ``max_bytes`` came: ServiceError 413."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise too_large(max_bytes)
        yield chunk


async def read_form(request: Request, *, max_bytes: int) -> FormData:
    """The multipart form of ``request``, parsed while its body streams and stopped once more
    than ``max_bytes`` + ``MULTIPART_OVERHEAD_BYTES`` came, whatever the transfer encoding (a
    chunked body declares no length). Close it after use.

    Raises:
        ServiceError: 413 over the limit, 400 ``invalid_multipart`` a malformed body.
    """
    body = limited(request.stream(), max_bytes + MULTIPART_OVERHEAD_BYTES)
    parser = MultiPartParser(request.headers, body, max_files=1, max_fields=16)
    try:
        return await parser.parse()
    except MultiPartException as error:
        raise ServiceError(400, "invalid_multipart", error.message) from error


def file_part(form: FormData) -> UploadFile:
    """Raises: ServiceError 400 ``missing_file``."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ServiceError(400, "missing_file", "multipart upload without a file part named 'file'")
    return upload


def request_body(media_types: Collection[str]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route that takes an upload: a raw body of one of
    ``media_types``, or a multipart ``file`` part whose content type (``encoding``) is one."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    multipart = {
        "schema": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary"}},
            "required": ["file"],
        },
        "encoding": {"file": {"contentType": ", ".join(media_types)}},
    }
    return {
        "required": True,
        "content": {"multipart/form-data": multipart} | {media: binary for media in media_types},
    }


async def read_upload(request: Request, *, max_bytes: int) -> bytes:
    """The uploaded image's bytes (not yet validated as an image).

    Raises:
        ServiceError: 413 over the byte limit, 415 a content type that is neither multipart
            nor one of ``decoding.RAW_MEDIA_TYPES``, 400 a malformed multipart body or one
            without a ``file`` part.
    """
    kind = upload_kind(request, max_bytes=max_bytes, media_types=RAW_MEDIA_TYPES)
    if kind == "multipart":
        form = await read_form(request, max_bytes=max_bytes)
        try:
            data = await file_part(form).read(max_bytes + 1)
        finally:
            await form.close()
    else:
        data = b"".join([chunk async for chunk in limited(request.stream(), max_bytes)])
    if len(data) > max_bytes:
        raise too_large(max_bytes)
    return data
