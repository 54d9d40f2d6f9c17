"""Python clients of the service, one blocking and one for asyncio, with the same methods. They
need httpx, httpx-retries and numpy (the NPZ reader of ``model.outputs.npz`` is numpy only), and
Pillow only to send arrays: never torch, OpenCV or the service's own stack (docs/client.md).

with DensePoseClient("http://127.0.0.1:8000") as client:
    client.wait_until_ready()
    answer = client.predict("photo.jpg")              # JSON dict: persons, timings, ...
    arrays = client.predict_arrays("photo.jpg")       # NPZ arrays: parts, u, v, instances, person_*
    overlay_png = client.predict_overlay("photo.jpg")

    job_id = client.submit_video("clip.mp4", radius=2)  # a background job (202)
    status = client.wait_video(job_id, progress=lambda done, total: print(done, "/", total))
    arrays = decode_npz(client.download_video(job_id, "result.npz"))
    client.download_video(job_id, "parts.mp4", "clip.parts.mp4")  # streamed into the file
    client.cancel_video(job_id)  # finished: deleted with its files

async with AsyncDensePoseClient("http://127.0.0.1:8000") as client:
    await client.wait_until_ready()
    answers = await asyncio.gather(*(client.predict(path) for path in paths))

A request the service refuses for now (503: queue full, not ready, shutting down; 429: too many
video jobs) is sent again after the ``Retry-After`` it came with (``DEFAULT_RETRY``; pass
``retry=`` to change it, ``retry=Retry(total=0)`` for none). Both clients build their requests
and read the answers with the same code (``_Requests`` and the functions below it); they differ
only in how they send and wait.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Literal, get_args, overload
from urllib.parse import quote

import anyio
import httpx
import numpy as np
from httpx_retries import Retry, RetryTransport

from model.outputs.npz import read_npz

ImageInput = str | Path | bytes | np.ndarray
"""A file path, encoded image bytes, or an (H, W, 3) uint8 RGB array (sent as PNG)."""
VideoInput = str | Path | bytes
"""A clip's file path (streamed, never read whole) or its bytes: MP4, MOV, WebM or AVI."""
VideoResultName = Literal["result.npz", "parts.mp4", "viridis.mp4"]
"""The results of a done video job, by the names of their URLs (``.../{job_id}/<name>``)."""
VIDEO_RESULTS: tuple[VideoResultName, ...] = get_args(VideoResultName)

ProgressCallback = Callable[[int, int], None]
"""``progress(frames_done, frames_total)``."""


DEFAULT_RETRY = Retry(
    total=5,
    allowed_methods=("GET", "POST", "DELETE"),
    status_forcelist=(429, 503),
    retry_on_exceptions=(),
    backoff_factor=0.5,
    max_backoff_wait=30.0,
    total_timeout=120.0,
)
"""Up to 5 retries of a request answered 503 or 429, each after the answer's ``Retry-After``
(30 s at most; without one, a jittered exponential backoff), 120 s of waiting in all. Every
method is retried: a refused request did nothing. Transport errors are not (a POST that timed
out may have run)."""
_NO_RETRY = Retry(total=0)
"""For the readiness probe: a 503 there is the answer, not a refusal."""


def encode_upload(image: ImageInput) -> bytes:
    """The bytes to upload: bytes as they are, a path's file, an (H, W, 3) uint8 RGB array as
    PNG.

    Raises:
        ValueError: an array of another shape or dtype.
    """
    if isinstance(image, bytes):
        return image
    if isinstance(image, np.ndarray):
        return _rgb_png(image)
    return Path(image).read_bytes()


def _rgb_png(image_rgb: np.ndarray) -> bytes:
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            "expected an (H, W, 3) uint8 RGB array, "
            f"got shape {image_rgb.shape} and dtype {image_rgb.dtype}"
        )
    from PIL import Image  # here: only sending arrays needs Pillow

    buffer = io.BytesIO()
    Image.fromarray(image_rgb).save(buffer, "PNG")
    return buffer.getvalue()


def decode_npz(data: bytes) -> dict[str, np.ndarray]:
    """An NPZ answer (``predict_arrays``, a video's ``result.npz``): array name -> array, in
    the layout of docs/outputs.md; checked by ``model.outputs.npz.read_npz``, never unpickled."""
    return read_npz(data)


class ServiceError(RuntimeError):
    """The service answered with an error: status and its JSON ``error`` object."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class VideoJobError(RuntimeError):
    """A video job ended ``failed`` or ``cancelled`` instead of ``done``: ``state``, the job's
    error ``code`` (its state when it has none, as when cancelled) and its final status."""

    def __init__(self, job: dict[str, Any]) -> None:
        error = job.get("error") or {}
        self.state = str(job["state"])
        self.code = str(error.get("code", self.state))
        self.job = job
        reason = f": {self.code}: {error['message']}" if "message" in error else ""
        super().__init__(f"video job {job['job_id']} {self.state}{reason}")


class DensePoseClient:
    """The blocking client. ``transport``: what sends the requests (default: HTTP), e.g. an
    ``httpx.MockTransport`` in tests; retries wrap it."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 60.0,
        retry: Retry = DEFAULT_RETRY,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        retrying = RetryTransport(transport or httpx.HTTPTransport(), retry=retry)
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=retrying)
        self._requests = _Requests(self._http)

    def __enter__(self) -> DensePoseClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 now (False while the service is unreachable)."""
        try:
            return _is_ready(self._http.send(self._requests.ready()))
        except httpx.TransportError:
            return False

    def wait_until_ready(self, *, timeout_s: float = 120.0, poll_s: float = 0.1) -> None:
        """Raises: TimeoutError."""
        poll = _Poll(timeout_s, poll_s)
        while not self.ready():
            time.sleep(poll.pause_s("service not ready"))

    def model_info(self) -> dict[str, Any]:
        """``GET /v1/model``: the served model, its batching and the limits."""
        return _json_object(self._send(self._requests.model_info()))

    def predict(self, image: ImageInput, **options: Any) -> dict[str, Any]:
        """JSON answer; ``options``: score_threshold, max_persons, outputs (list)."""
        return _json_object(self._send(self._requests.predict(image, "json", options)))

    def predict_arrays(self, image: ImageInput, **options: Any) -> dict[str, np.ndarray]:
        """The NPZ answer's arrays (``decode_npz``)."""
        return decode_npz(self._send(self._requests.predict(image, "npz", options)).content)

    def predict_overlay(self, image: ImageInput, **options: Any) -> bytes:
        """PNG bytes: the image with the persons' parts drawn over it."""
        return self._send(self._requests.predict(image, "png", options)).content

    # -- video jobs ---------------------------------------------------------------------------

    def submit_video(self, video: VideoInput, **options: Any) -> str:
        """Start a job on a clip; its id. ``options``: smooth, flow (``dis`` or ``raft``),
        radius, score_threshold; None or absent: the service's default."""
        with _opened(video) as upload:
            return _job_id(self._send(self._requests.submit_video(upload, options)))

    def video_status(self, job_id: str) -> dict[str, Any]:
        """The job's state, progress, timings, error and result links."""
        return _json_object(self._send(self._requests.video_status(job_id)))

    def wait_video(
        self,
        job_id: str,
        *,
        timeout_s: float = 600.0,
        poll_s: float = 0.5,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Poll the job every ``poll_s`` until it is done; its final status. ``progress`` is
        called with ``(frames_done, frames_total)`` on the first poll and whenever they change.

        Raises:
            VideoJobError: the job failed or was cancelled.
            TimeoutError: not finished after ``timeout_s`` (the job goes on: ``cancel_video``).
            ServiceError: e.g. 404 ``job_not_found`` (deleted or expired).
        """
        wait = _VideoWait(job_id, _Poll(timeout_s, poll_s), progress)
        while not wait.done(status := self.video_status(job_id)):
            time.sleep(wait.pause_s())
        return status

    @overload
    def download_video(self, job_id: str, name: VideoResultName) -> bytes: ...

    @overload
    def download_video(self, job_id: str, name: VideoResultName, path: str | Path) -> Path: ...

    def download_video(
        self, job_id: str, name: VideoResultName, path: str | Path | None = None
    ) -> bytes | Path:
        """A done job's result by name (``VideoResultName``; read ``result.npz`` with
        ``decode_npz``): its bytes; with ``path``, streamed into that file instead, and the
        path.

        Raises:
            ValueError: not one of ``VIDEO_RESULTS``.
            ServiceError: 409 ``job_not_done``, 404 ``job_not_found``.
        """
        request = self._requests.video_result(job_id, name)
        if path is None:
            return self._send(request).content
        response = self._send(request, stream=True)
        target = Path(path)
        try:
            with target.open("wb") as file:
                for chunk in response.iter_bytes():
                    file.write(chunk)
        finally:
            response.close()
        return target

    def cancel_video(self, job_id: str) -> dict[str, Any] | None:
        """Cancel a queued job (at once) or stop a running one (before its next batch of
        frames): its status (202). A finished job (done, failed or cancelled) is deleted with
        its files: None (204)."""
        return _status_or_none(self._send(self._requests.cancel_video(job_id)))

    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """The answer, if a success (with ``stream``: its body not read yet).

        Raises:
            ServiceError: any other answer, once retries are spent.
        """
        response = self._http.send(request, stream=stream)
        if not response.is_success:
            response.read()
        return _checked(response)


class AsyncDensePoseClient:
    """The asyncio client: ``DensePoseClient``'s methods, as coroutines. ``transport``: what
    sends the requests (default: HTTP); retries wrap it."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 60.0,
        retry: Retry = DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        retrying = RetryTransport(transport or httpx.AsyncHTTPTransport(), retry=retry)
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=retrying)
        self._requests = _Requests(self._http)

    async def __aenter__(self) -> AsyncDensePoseClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 now (False while the service is unreachable)."""
        try:
            return _is_ready(await self._http.send(self._requests.ready()))
        except httpx.TransportError:
            return False

    async def wait_until_ready(self, *, timeout_s: float = 120.0, poll_s: float = 0.1) -> None:
        """Raises: TimeoutError."""
        poll = _Poll(timeout_s, poll_s)
        while not await self.ready():
            await asyncio.sleep(poll.pause_s("service not ready"))

    async def model_info(self) -> dict[str, Any]:
        return _json_object(await self._send(self._requests.model_info()))

    async def predict(self, image: ImageInput, **options: Any) -> dict[str, Any]:
        return _json_object(await self._send(self._requests.predict(image, "json", options)))

    async def predict_arrays(self, image: ImageInput, **options: Any) -> dict[str, np.ndarray]:
        answer = await self._send(self._requests.predict(image, "npz", options))
        return decode_npz(answer.content)

    async def predict_overlay(self, image: ImageInput, **options: Any) -> bytes:
        return (await self._send(self._requests.predict(image, "png", options))).content

    async def submit_video(self, video: VideoInput, **options: Any) -> str:
        with _opened(video) as upload:
            return _job_id(await self._send(self._requests.submit_video(upload, options)))

    async def video_status(self, job_id: str) -> dict[str, Any]:
        return _json_object(await self._send(self._requests.video_status(job_id)))

    async def wait_video(
        self,
        job_id: str,
        *,
        timeout_s: float = 600.0,
        poll_s: float = 0.5,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """As ``DensePoseClient.wait_video``."""
        wait = _VideoWait(job_id, _Poll(timeout_s, poll_s), progress)
        while not wait.done(status := await self.video_status(job_id)):
            await asyncio.sleep(wait.pause_s())
        return status

    @overload
    async def download_video(self, job_id: str, name: VideoResultName) -> bytes: ...

    @overload
    async def download_video(
        self, job_id: str, name: VideoResultName, path: str | Path
    ) -> Path: ...

    async def download_video(
        self, job_id: str, name: VideoResultName, path: str | Path | None = None
    ) -> bytes | Path:
        """As ``DensePoseClient.download_video``."""
        request = self._requests.video_result(job_id, name)
        if path is None:
            return (await self._send(request)).content
        response = await self._send(request, stream=True)
        target = Path(path)
        try:
            async with await anyio.open_file(target, "wb") as file:
                async for chunk in response.aiter_bytes():
                    await file.write(chunk)
        finally:
            await response.aclose()
        return target

    async def cancel_video(self, job_id: str) -> dict[str, Any] | None:
        return _status_or_none(await self._send(self._requests.cancel_video(job_id)))

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """As ``DensePoseClient._send``."""
        response = await self._http.send(request, stream=stream)
        if not response.is_success:
            await response.aread()
        return _checked(response)


# -- what both clients share: the requests, reading the answers, waiting -----------------------


class _Requests:
    """Every request of the API, built (not sent) with the client's base URL and headers."""

    def __init__(self, http: httpx.Client | httpx.AsyncClient) -> None:
        self._http = http

    def ready(self) -> httpx.Request:
        return self._http.build_request("GET", "/readyz", extensions={"retry": _NO_RETRY})

    def model_info(self) -> httpx.Request:
        return self._http.build_request("GET", "/v1/model")

    def predict(
        self, image: ImageInput, output: Literal["json", "npz", "png"], options: Mapping[str, Any]
    ) -> httpx.Request:
        files = {"file": ("image", encode_upload(image), "application/octet-stream")}
        params = _given(options) | {"format": output}
        return self._http.build_request("POST", "/densepose", params=params, files=files)

    def submit_video(
        self, upload: tuple[str, bytes | BinaryIO], options: Mapping[str, Any]
    ) -> httpx.Request:
        """``upload``: the file name and content (an open file is streamed, from its start
        again on a retry)."""
        name, content = upload
        files = {"file": (name, content, "application/octet-stream")}
        return self._http.build_request(
            "POST", "/densepose/video", params=_given(options), files=files
        )

    def video_status(self, job_id: str) -> httpx.Request:
        return self._http.build_request("GET", _video_path(job_id))

    def video_result(self, job_id: str, name: VideoResultName) -> httpx.Request:
        """Raises: ValueError for a name not in ``VIDEO_RESULTS``."""
        if name not in VIDEO_RESULTS:
            raise ValueError(
                f"no video result {name!r}: expected one of {', '.join(VIDEO_RESULTS)}"
            )
        return self._http.build_request("GET", f"{_video_path(job_id)}/{name}")

    def cancel_video(self, job_id: str) -> httpx.Request:
        return self._http.build_request("DELETE", _video_path(job_id))


def _given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The query options given: None means the service's default."""
    return {name: value for name, value in options.items() if value is not None}


def _video_path(job_id: str) -> str:
    return f"/densepose/video/{quote(job_id, safe='')}"


def _checked(response: httpx.Response) -> httpx.Response:
    """Raises: ServiceError for an answer that is not a success (its body read)."""
    if response.is_success:
        return response
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200]
    raise ServiceError(response.status_code, code, message)


def _is_ready(response: httpx.Response) -> bool:
    return response.status_code == 200


def _json_object(response: httpx.Response) -> dict[str, Any]:
    return dict(response.json())


def _job_id(response: httpx.Response) -> str:
    return str(response.json()["job_id"])


def _status_or_none(response: httpx.Response) -> dict[str, Any] | None:
    """A DELETE's answer: the job's status (202), or None (204, the job is gone)."""
    return None if response.status_code == 204 else _json_object(response)


@contextmanager
def _opened(video: VideoInput) -> Iterator[tuple[str, bytes | BinaryIO]]:
    """The upload's file name and content: the bytes, or the open file (httpx streams it)."""
    if isinstance(video, bytes):
        yield "video", video
        return
    path = Path(video)
    with path.open("rb") as file:
        yield path.name, file


class _Poll:
    """The pauses of a polling loop: ``poll_s`` each, until ``timeout_s`` from its creation."""

    def __init__(self, timeout_s: float, poll_s: float) -> None:
        if poll_s <= 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s}")
        self._timeout_s = timeout_s
        self._poll_s = poll_s
        self._deadline = time.monotonic() + timeout_s

    def pause_s(self, waiting_for: str) -> float:
        """The next pause.

        Raises:
            TimeoutError: the time is up (``waiting_for`` says for what).
        """
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{waiting_for} after {self._timeout_s:g} s")
        return min(self._poll_s, remaining)


class _VideoWait:
    """``wait_video``'s reading of each status it polls: progress, the end, the timeout."""

    def __init__(self, job_id: str, poll: _Poll, progress: ProgressCallback | None) -> None:
        self._job_id = job_id
        self._poll = poll
        self._progress = progress
        self._reported: tuple[int, int] | None = None
        self._state = "queued"

    def done(self, status: dict[str, Any]) -> bool:
        """Reports a change of progress; True once the job is done.

        Raises:
            VideoJobError: it failed or was cancelled.
        """
        frames = (
            int(status["progress"]["frames_done"]),
            int(status["progress"]["frames_total"]),
        )
        if self._progress is not None and frames != self._reported:
            self._progress(*frames)
            self._reported = frames
        self._state = str(status["state"])
        if self._state in ("failed", "cancelled"):
            raise VideoJobError(status)
        return self._state == "done"

    def pause_s(self) -> float:
        """Raises: TimeoutError."""
        return self._poll.pause_s(f"video job {self._job_id} still {self._state}")
