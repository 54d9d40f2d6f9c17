"""Receiving one clip for a video job: a multipart ``file`` or a raw ``video/*`` body, streamed
to a file and never past the byte limit; its container recognised from its first bytes; then
probed (frames, fps, size, duration), held to the limits, and its packets counted whole (a
truncated file has too few, or one cut short) before any job exists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Request
from starlette.datastructures import UploadFile

from model.video import VideoError, VideoInfo, probe
from model.video.io import CONTAINERS, container_of, whole_packets
from service.errors import ServiceError
from service.uploads import file_part, limited, read_form, upload_kind

RAW_MEDIA_TYPES = (
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/x-matroska",
    "video/x-msvideo",
    "video/avi",
    "application/octet-stream",
)
"""Content types a raw (non-multipart) upload may declare; the bytes decide the container."""
_CHUNK_BYTES = 1024 * 1024


async def save_upload(request: Request, path: Path, *, max_bytes: int) -> int:
    """Stream the uploaded clip to ``path`` (created); its size in bytes.

    Raises:
        ServiceError: 413 over the byte limit, 415 a content type that is neither multipart
            nor one of ``RAW_MEDIA_TYPES``, 400 an empty upload, a malformed multipart body or
            one without a ``file`` part.
    """
    if upload_kind(request, max_bytes=max_bytes, media_types=RAW_MEDIA_TYPES) == "raw":
        size = await _write(request.stream(), path, max_bytes=max_bytes)
    else:
        form = await read_form(request, max_bytes=max_bytes)
        try:
            chunks = _read_chunks(file_part(form))
            size = await _write(chunks, path, max_bytes=max_bytes)
        finally:
            await form.close()
    if size == 0:
        raise ServiceError(400, "empty_body", "the upload is empty: send one video clip")
    return size


async def _read_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(_CHUNK_BYTES):
        yield chunk


async def _write(chunks: AsyncIterator[bytes], path: Path, *, max_bytes: int) -> int:
    size = 0
    with path.open("xb") as file:
        async for chunk in limited(chunks, max_bytes):
            size += len(chunk)
            await asyncio.to_thread(file.write, chunk)
    return size


def check_video(
    path: Path, *, max_seconds: float, max_frames: int, max_pixels: int
) -> tuple[Path, VideoInfo]:
    """The clip renamed to ``video.<container>`` beside itself, and its probe, once it is a
    readable video within the limits. Blocking: run it in a worker thread.

    Raises:
        ServiceError: 415 ``unsupported_video`` (not one of ``CONTAINERS``), 422
            ``invalid_video`` (unreadable, no frames, no frame rate, truncated), 413
            ``too_many_pixels`` / ``too_many_frames`` / ``video_too_long``.
    """
    with path.open("rb") as file:
        container = container_of(file.read(12))
    if container is None:
        raise ServiceError(
            415,
            "unsupported_video",
            f"not a video container this service reads: expected {', '.join(CONTAINERS)}",
        )
    source = path.rename(path.with_name(f"video.{container}"))
    try:
        info = probe(source)
    except VideoError as error:
        raise _invalid(container, source, error) from error
    pixels = info.width * info.height
    if pixels > max_pixels:
        raise ServiceError(
            413,
            "too_many_pixels",
            f"frames of {info.width} × {info.height} = {pixels} pixels, more than the limit "
            f"of {max_pixels}",
        )
    if info.frames > max_frames:
        raise ServiceError(
            413, "too_many_frames", f"{info.frames} frames, more than the limit of {max_frames}"
        )
    if info.duration_s > max_seconds:
        raise ServiceError(
            413,
            "video_too_long",
            f"{info.duration_s:.2f} s long, more than the limit of {max_seconds:g} s",
        )
    try:
        packets = whole_packets(source)  # after the limits: a pass over the whole file
    except VideoError as error:
        raise _invalid(container, source, error) from error
    if packets == 0 or packets < info.fewest_frames:
        raise ServiceError(
            422,
            "invalid_video",
            f"the {container} upload is truncated: {packets} whole frames of the "
            f"{info.frames} it declares",
        )
    return source, info


def _invalid(container: str, source: Path, error: VideoError) -> ServiceError:
    reason = str(error).removeprefix(f"{source.name}: ")
    return ServiceError(422, "invalid_video", f"the {container} upload: {reason}")
