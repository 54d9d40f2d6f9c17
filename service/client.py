"""A small synchronous client of the service.

client = DensePoseClient("http://127.0.0.1:8000")
client.wait_until_ready()
answer = client.predict("photo.jpg")              # JSON dict: persons, timings, ...
arrays = client.predict_arrays("photo.jpg")       # NPZ arrays: boxes_xyxy, masks, u, v, ...
overlay_png = client.predict_overlay("photo.jpg")

job_id = client.submit_video("clip.mp4", radius=2)            # a background job (202)
status = client.wait_video(job_id, progress=lambda done, total: print(done, "/", total))
arrays = npz_bytes_to_arrays(client.download_video(job_id, "result.npz"))
client.download_video(job_id, "parts.mp4", "clip.parts.mp4")  # streamed into the file
client.cancel_video(job_id)                                    # finished: deleted with its files
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Literal, get_args, overload
from urllib.parse import quote

import cv2
import httpx
import numpy as np

from model.outputs.encoding import npz_bytes_to_arrays

ImageInput = str | Path | bytes | np.ndarray
"""A file path, encoded image bytes, or an (H, W, 3) uint8 RGB array (sent as PNG)."""
VideoInput = str | Path | bytes
"""A clip's file path (streamed, never read whole) or its bytes: MP4, MOV, WebM or AVI."""
VideoResultName = Literal["result.npz", "parts.mp4", "viridis.mp4"]
VIDEO_RESULTS: tuple[VideoResultName, ...] = get_args(VideoResultName)
ProgressCallback = Callable[[int, int], None]
"""``progress(frames_done, frames_total)``."""


def encode_upload(image: ImageInput) -> bytes:
    if isinstance(image, bytes):
        return image
    if isinstance(image, np.ndarray):
        ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"cannot encode an array of shape {image.shape} as PNG")
        return png.tobytes()
    return Path(image).read_bytes()


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
    def __init__(self, base_url: str, *, timeout_s: float = 60.0) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s)

    def __enter__(self) -> DensePoseClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def wait_until_ready(self, *, timeout_s: float = 120.0, poll_s: float = 0.1) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"service not ready after {timeout_s:g} s")
            time.sleep(poll_s)

    def model_info(self) -> dict[str, Any]:
        return dict(self._checked(self._http.get("/v1/model")).json())

    def predict(self, image: ImageInput, **options: Any) -> dict[str, Any]:
        """JSON answer; ``options``: score_threshold, max_persons, outputs (list)."""
        return dict(self._post(image, "json", options).json())

    def predict_arrays(self, image: ImageInput, **options: Any) -> dict[str, np.ndarray]:
        return npz_bytes_to_arrays(self._post(image, "npz", options).content)

    def predict_overlay(self, image: ImageInput, **options: Any) -> bytes:
        return self._post(image, "png", options).content

    # -- video jobs ---------------------------------------------------------------------------

    def submit_video(self, video: VideoInput, **options: Any) -> str:
        """Start a job on a clip; its id. ``options``: smooth, flow (``dis`` or ``raft``),
        radius, score_threshold; None or absent: the service's default."""
        params = {k: v for k, v in options.items() if v is not None}
        with _opened(video) as (name, content):
            files = {"file": (name, content, "application/octet-stream")}
            response = self._http.post("/densepose/video", params=params, files=files)
        return str(self._checked(response).json()["job_id"])

    def video_status(self, job_id: str) -> dict[str, Any]:
        """The job's state, progress, timings, error and result links."""
        return dict(self._checked(self._http.get(_video_path(job_id))).json())

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
        if poll_s <= 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s}")
        deadline = time.monotonic() + timeout_s
        reported: tuple[int, int] | None = None
        while True:
            status = self.video_status(job_id)
            frames = (
                int(status["progress"]["frames_done"]),
                int(status["progress"]["frames_total"]),
            )
            if progress is not None and frames != reported:
                progress(*frames)
                reported = frames
            if status["state"] == "done":
                return status
            if status["state"] in ("failed", "cancelled"):
                raise VideoJobError(status)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"video job {job_id} still {status['state']} after {timeout_s:g} s"
                )
            time.sleep(min(poll_s, remaining))

    @overload
    def download_video(self, job_id: str, name: VideoResultName) -> bytes: ...

    @overload
    def download_video(self, job_id: str, name: VideoResultName, path: str | Path) -> Path: ...

    def download_video(
        self, job_id: str, name: VideoResultName, path: str | Path | None = None
    ) -> bytes | Path:
        """A done job's result by name: ``result.npz`` (read it with
        ``npz_bytes_to_arrays``), ``parts.mp4`` or ``viridis.mp4``. Its bytes; with ``path``,
        streamed into that file instead, and the path.

        Raises:
            ValueError: not one of ``VIDEO_RESULTS``.
            ServiceError: 409 ``job_not_done``, 404 ``job_not_found``.
        """
        if name not in VIDEO_RESULTS:
            raise ValueError(
                f"no video result {name!r}: expected one of {', '.join(VIDEO_RESULTS)}"
            )
        url = _video_path(job_id, name)
        if path is None:
            return self._checked(self._http.get(url)).content
        with self._http.stream("GET", url) as response:
            if not response.is_success:
                response.read()
            self._checked(response)
            target = Path(path)
            with target.open("wb") as file:
                for chunk in response.iter_bytes():
                    file.write(chunk)
        return target

    def cancel_video(self, job_id: str) -> dict[str, Any] | None:
        """Cancel a queued job (at once) or stop a running one (before its next batch of
        frames): its status (202). A finished job (done, failed or cancelled) is deleted with
        its files: None (204)."""
        response = self._checked(self._http.delete(_video_path(job_id)))
        return None if response.status_code == 204 else dict(response.json())

    def _post(self, image: ImageInput, output: str, options: dict[str, Any]) -> httpx.Response:
        params = {k: v for k, v in options.items() if v is not None} | {"format": output}
        files = {"file": ("image", encode_upload(image), "application/octet-stream")}
        return self._checked(self._http.post("/densepose", params=params, files=files))

    @staticmethod
    def _checked(response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        try:
            error = response.json()["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", response.text[:200]
        raise ServiceError(response.status_code, code, message)


def _video_path(job_id: str, result: str = "") -> str:
    path = f"/densepose/video/{quote(job_id, safe='')}"
    return f"{path}/{result}" if result else path


@contextmanager
def _opened(video: VideoInput) -> Iterator[tuple[str, bytes | BinaryIO]]:
    """The upload's file name and content: the bytes, or the open file (httpx streams it)."""
    if isinstance(video, bytes):
        yield "video", video
        return
    path = Path(video)
    with path.open("rb") as file:
        yield path.name, file
