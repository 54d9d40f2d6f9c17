"""``service.client`` without a server: what importing it costs, the requests both clients send
(the same ones), retries after ``Retry-After`` on 503 and 429, and the errors they raise. The
answers come from an ``httpx.MockTransport``; ``test_service_client_video.py`` runs the clients
against the real app."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import httpx_retries.retry
import numpy as np
import pytest
from PIL import Image

from model.outputs.npz import MAP_DTYPES, PERSON_DTYPES
from service.client import (
    DEFAULT_RETRY,
    AsyncDensePoseClient,
    DensePoseClient,
    ServiceError,
    VideoJobError,
    encode_upload,
)

URL = "http://ddp.test"
PNG = b"\x89PNG not really"
JOB = "job 1"  # a space: the client quotes ids in paths
Handler = Callable[[httpx.Request], httpx.Response]


def dense_pose_npz(scores: tuple[float, ...] = (0.5, 0.25)) -> bytes:
    """An NPZ of the service's layout: one blank 4 × 6 frame, persons of these scores."""
    arrays = {name: np.zeros((1, 4, 6), dtype) for name, dtype in MAP_DTYPES.items()}
    arrays |= {name: np.zeros(len(scores), dtype) for name, dtype in PERSON_DTYPES.items()}
    arrays["person_box_xyxy"] = np.zeros((len(scores), 4), PERSON_DTYPES["person_box_xyxy"])
    arrays["person_score"] = np.array(scores, PERSON_DTYPES["person_score"])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def status(state: str, done: int = 2, total: int = 2, **extra: Any) -> dict[str, Any]:
    progress = {"frames_done": done, "frames_total": total}
    return {"job_id": JOB, "state": state, "progress": progress, **extra}


def error(status_code: int, code: str, **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": f"{code} for the test"}}
    return httpx.Response(status_code, json=body, headers=headers)


def service(request: httpx.Request) -> httpx.Response:
    """A stand-in for the service: a canned success for every route the clients call."""
    path, method = request.url.path, request.method
    if path == "/readyz":
        return httpx.Response(200, json={"ready": True, "status": "ready"})
    if path == "/v1/model":
        return httpx.Response(200, json={"model_id": "tiny@test"})
    if path == "/densepose":
        answers = {
            "json": httpx.Response(200, json={"persons": []}),
            "npz": httpx.Response(200, content=dense_pose_npz()),
            "png": httpx.Response(200, content=PNG),
        }
        return answers[request.url.params["format"]]
    if path == "/densepose/video" and method == "POST":
        return httpx.Response(202, json={"job_id": JOB, "status_url": f"{URL}/x"})
    if path == f"/densepose/video/{JOB}" and method == "GET":
        return httpx.Response(200, json=status("done"))
    if path == f"/densepose/video/{JOB}" and method == "DELETE":
        return httpx.Response(204)
    if path.startswith(f"/densepose/video/{JOB}/"):
        return httpx.Response(200, content=path.rsplit("/", 1)[1].encode() * 1000)
    return error(404, "not_found")


class Recorder:
    """A mock transport's handler that keeps every request it answered (body included, the
    multipart boundary replaced by a constant) and answers from ``responses`` in turn, then
    from ``fallback``."""

    def __init__(self, *responses: httpx.Response, fallback: Handler = service) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self._responses = list(responses)
        self._fallback = fallback

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        content_type = request.headers.get("content-type", "")
        if "boundary=" in content_type:
            body = body.replace(content_type.split("boundary=")[1].encode(), b"BOUNDARY")
        self.requests.append((request.method, str(request.url), body))
        return self._responses.pop(0) if self._responses else self._fallback(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry waits (seconds), recorded instead of slept."""
    recorded: list[float] = []

    async def asleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(httpx_retries.retry, "time", SimpleNamespace(sleep=recorded.append))
    monkeypatch.setattr(httpx_retries.retry, "asyncio", SimpleNamespace(sleep=asleep))
    return recorded


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not really a clip" * 100)
    return path


# -- importing --------------------------------------------------------------------------------


def test_importing_the_client_loads_neither_torch_nor_opencv_nor_the_app() -> None:
    code = (
        "import sys, service.client; heavy = ('torch', 'cv2', 'PIL', 'fastapi', 'service.app'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"


# -- one implementation, two clients ----------------------------------------------------------


def sync_calls(transport: httpx.MockTransport, clip: Path, out: Path) -> list[Any]:
    with DensePoseClient(URL, transport=transport) as client:
        return [
            client.ready(),
            client.model_info(),
            client.predict(PNG, max_persons=2, score_threshold=None, outputs=["mask"]),
            client.predict_arrays(PNG)["person_score"].tolist(),
            client.predict_overlay(np.zeros((4, 6, 3), np.uint8)),
            client.submit_video(clip, radius=1, flow=None),
            client.submit_video(b"clip bytes"),
            client.video_status(JOB),
            client.wait_video(JOB),
            client.download_video(JOB, "result.npz"),
            client.download_video(JOB, "parts.mp4", out).read_bytes(),
            client.cancel_video(JOB),
        ]


async def async_calls(transport: httpx.MockTransport, clip: Path, out: Path) -> list[Any]:
    async with AsyncDensePoseClient(URL, transport=transport) as client:
        return [
            await client.ready(),
            await client.model_info(),
            await client.predict(PNG, max_persons=2, score_threshold=None, outputs=["mask"]),
            (await client.predict_arrays(PNG))["person_score"].tolist(),
            await client.predict_overlay(np.zeros((4, 6, 3), np.uint8)),
            await client.submit_video(clip, radius=1, flow=None),
            await client.submit_video(b"clip bytes"),
            await client.video_status(JOB),
            await client.wait_video(JOB),
            await client.download_video(JOB, "result.npz"),
            (await client.download_video(JOB, "parts.mp4", out)).read_bytes(),
            await client.cancel_video(JOB),
        ]


def test_both_clients_send_the_same_requests_and_read_the_same_answers(
    clip: Path, tmp_path: Path
) -> None:
    sync_service, async_service = Recorder(), Recorder()
    sync_answers = sync_calls(sync_service.transport, clip, tmp_path / "sync.mp4")
    async_answers = asyncio.run(async_calls(async_service.transport, clip, tmp_path / "a.mp4"))

    assert async_answers == sync_answers
    assert async_service.requests == sync_service.requests
    assert sync_answers[:4] == [True, {"model_id": "tiny@test"}, {"persons": []}, [0.5, 0.25]]
    assert sync_answers[5:7] == [JOB, JOB]
    assert sync_answers[-3:] == [b"result.npz" * 1000, b"parts.mp4" * 1000, None]
    urls = [url for _, url, _ in sync_service.requests]
    assert urls[2] == f"{URL}/densepose?max_persons=2&outputs=mask&format=json"
    assert urls[5] == f"{URL}/densepose/video?radius=1"
    assert urls[-1] == f"{URL}/densepose/video/job%201"
    assert clip.read_bytes() in sync_service.requests[5][2]


def test_an_rgb_array_is_sent_as_its_png() -> None:
    image = np.random.default_rng(0).integers(0, 256, (10, 12, 3), np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode_upload(image))))
    np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize(
    "array", [np.zeros((10, 12), np.uint8), np.zeros((10, 12, 4), np.uint8), np.zeros((4, 4, 3))]
)
def test_other_arrays_are_refused_before_sending(array: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB"):
        encode_upload(array)


# -- retries ----------------------------------------------------------------------------------


def test_a_refused_image_is_sent_again_after_its_retry_after(waits: list[float]) -> None:
    server = Recorder(error(503, "queue_full", **{"Retry-After": "2"}), error(429, "busy"))
    with DensePoseClient(URL, transport=server.transport) as client:
        assert client.predict(PNG) == {"persons": []}
    assert len(server.requests) == 3
    assert server.requests[0] == server.requests[1] == server.requests[2]  # the same upload
    assert waits[0] == 2.0  # as the service said
    assert 0.0 <= waits[1] <= DEFAULT_RETRY.max_backoff_wait  # no Retry-After: backoff


def test_async_video_upload_is_sent_again_whole_after_a_429(waits: list[float], clip: Path) -> None:
    server = Recorder(error(429, "too_many_jobs", **{"Retry-After": "7"}))

    async def submit() -> str:
        async with AsyncDensePoseClient(URL, transport=server.transport) as client:
            return await client.submit_video(clip)

    assert asyncio.run(submit()) == JOB
    assert waits == [7.0]
    first, second = server.requests
    assert first == second and clip.read_bytes() in first[2]


def test_retries_are_bounded_in_number_and_wait(waits: list[float]) -> None:
    always_full = Recorder(fallback=lambda _: error(503, "queue_full", **{"Retry-After": "600"}))
    retry = DEFAULT_RETRY.copy_with(total=2, max_backoff_wait=5.0)
    with (
        DensePoseClient(URL, transport=always_full.transport, retry=retry) as client,
        pytest.raises(ServiceError) as refused,
    ):
        client.predict(PNG)
    assert (refused.value.status, refused.value.code) == (503, "queue_full")
    assert len(always_full.requests) == 3
    assert waits == [5.0, 5.0]


def test_other_errors_and_the_readiness_probe_are_not_retried(waits: list[float]) -> None:
    server = Recorder(error(400, "corrupt_image"), error(503, "not_ready", **{"Retry-After": "1"}))
    with DensePoseClient(URL, transport=server.transport) as client:
        with pytest.raises(ServiceError, match="corrupt_image") as refused:
            client.predict(PNG)
        assert refused.value.status == 400
        assert client.ready() is False  # at once: a 503 there is the answer
    assert len(server.requests) == 2 and waits == []


def test_retries_can_be_turned_off(waits: list[float]) -> None:
    server = Recorder(error(503, "queue_full", **{"Retry-After": "1"}))
    retry = DEFAULT_RETRY.copy_with(total=0)
    with (
        DensePoseClient(URL, transport=server.transport, retry=retry) as client,
        pytest.raises(ServiceError, match="queue_full"),
    ):
        client.predict(PNG)
    assert len(server.requests) == 1 and waits == []


# -- errors -----------------------------------------------------------------------------------


def test_a_failed_job_raises_after_reporting_its_progress() -> None:
    failed = status("failed", 1, 4, error={"code": "corrupt_video", "message": "bad frame 2"})
    server = Recorder(
        httpx.Response(200, json=status("running", 0, 4)),
        httpx.Response(200, json=status("running", 1, 4)),
        httpx.Response(200, json=failed),
    )
    progress: list[tuple[int, int]] = []

    async def wait() -> None:
        async with AsyncDensePoseClient(URL, transport=server.transport) as client:
            await client.wait_video(JOB, poll_s=0.001, progress=lambda *p: progress.append(p))

    with pytest.raises(VideoJobError, match="corrupt_video: bad frame 2") as stopped:
        asyncio.run(wait())
    assert (stopped.value.state, stopped.value.code) == ("failed", "corrupt_video")
    assert progress == [(0, 4), (1, 4)]


def test_an_unknown_result_name_is_refused_before_sending() -> None:
    server = Recorder()
    with (
        DensePoseClient(URL, transport=server.transport) as client,
        pytest.raises(ValueError, match=r"result\.json"),
    ):
        client.download_video(JOB, "result.json")  # type: ignore[call-overload]
    assert server.requests == []


def test_a_failed_streamed_download_leaves_no_file(tmp_path: Path) -> None:
    server = Recorder(error(409, "job_not_done"))
    with (
        DensePoseClient(URL, transport=server.transport) as client,
        pytest.raises(ServiceError, match="job_not_done"),
    ):
        client.download_video(JOB, "viridis.mp4", tmp_path / "v.mp4")
    assert not (tmp_path / "v.mp4").exists()


def test_a_non_json_error_keeps_its_status_and_text() -> None:
    server = Recorder(httpx.Response(502, text="<html>bad gateway</html>"))
    with (
        DensePoseClient(URL, transport=server.transport) as client,
        pytest.raises(ServiceError, match="502 http_error: <html>bad gateway") as failed,
    ):
        client.model_info()
    assert failed.value.status == 502


def test_waiting_for_readiness_times_out_with_a_clear_message() -> None:
    server = Recorder(fallback=lambda _: error(503, "not_ready"))
    with (
        DensePoseClient(URL, transport=server.transport) as client,
        pytest.raises(TimeoutError, match=r"service not ready after 0\.05 s"),
    ):
        client.wait_until_ready(timeout_s=0.05, poll_s=0.01)
