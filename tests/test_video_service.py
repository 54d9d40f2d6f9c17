"""Video jobs over HTTP (``TestClient``, tiny random network, the embedded SQLite queue and
the app's own worker): the real pipeline end to end, then, with a stand-in pipeline that
blocks until cancelled, cancellation, the job bounds, failures, expiry and shutdown; bad
uploads; and after each of them, no file left behind but those of the jobs that exist."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from clips import write_h264, write_opencv  # tests/clips.py
from fastapi.testclient import TestClient
from redis import Redis

import service.jobs.worker
from model.video import VideoCancelled, VideoError
from service.app import create_app
from service.settings import Settings
from service.testing import random_image, redis_server, stray_job_files, tiny_checkpoint

FRAMES, HEIGHT, WIDTH, FPS = 8, 64, 96, 10.0
MAX_BYTES, MAX_FRAMES = 1_000_000, 12
LIMITS = {
    "video_max_bytes": MAX_BYTES,
    "video_max_frames": MAX_FRAMES,
    "video_max_seconds": 2.0,
    "video_max_pixels": HEIGHT * WIDTH,
}


def write_clip(
    path: Path,
    *,
    frames: int = FRAMES,
    height: int = HEIGHT,
    width: int = WIDTH,
    fps: float = FPS,
    fourcc: str = "MJPG",
) -> bytes:
    """A clip of moving noise (``MJPG`` AVI or ``mp4v`` MP4); its bytes."""
    size = {"frames": frames, "height": height, "width": width, "fps": fps}
    return write_opencv(path, fourcc=fourcc, **size)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_clip(tmp_path_factory.mktemp("clips") / "clip.avi")


@contextmanager
def serve(weights: Path, jobs_root: Path, **settings: Any) -> Iterator[TestClient]:
    """The app with video limits for tests, ready; afterwards, only files of its jobs."""
    config = Settings(
        weights=weights, max_wait_ms=0, video_jobs_root=jobs_root, **LIMITS | settings
    )
    app = create_app(config)
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield client
    assert stray_job_files(config) == []


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The settings of each queue backend: the embedded one, and a real, emptied Redis."""
    if request.param == "sqlite":
        return {}
    url: str = request.getfixturevalue("redis_url")
    Redis.from_url(url).flushdb()
    return {"video_queue_url": url}


@pytest.fixture(scope="module")
def client(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with serve(weights, tmp_path_factory.mktemp("jobs")) as test_client:
        yield test_client


def job_files(client: TestClient) -> set[Path]:
    """Every file and directory under the app's jobs directory."""
    root: Path = client.app.state.video_jobs.root  # type: ignore[attr-defined]
    return set(root.rglob("*"))


def post(client: TestClient, data: bytes, params: str = "") -> Any:
    """The response (starlette's test client: httpx or httpx2)."""
    return client.post(f"/densepose/video{params}", files={"file": ("clip", data, "video/avi")})


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def wait_for(
    client: TestClient, job_id: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 120
) -> list[dict[str, Any]]:
    """Poll the job's status until ``done(status)``; every status seen."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while not seen or not done(seen[-1]):
        assert time.monotonic() < deadline, seen[-1:]
        response = client.get(f"/densepose/video/{job_id}")
        assert response.status_code == 200, response.text
        seen.append(response.json())
        time.sleep(0.02)
    return seen


def finished(status: dict[str, Any]) -> bool:
    return status["state"] in ("done", "failed", "cancelled")


def decoded_frames(data: bytes, path: Path) -> list[np.ndarray]:
    path.write_bytes(data)
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    capture.release()
    return frames


# -- the real pipeline ----------------------------------------------------------------------


def test_clip_to_results_end_to_end(client: TestClient, clip: bytes, tmp_path: Path) -> None:
    before = job_files(client)
    response = post(client, clip, "?radius=1&score_threshold=0.2")
    assert response.status_code == 202, response.text
    body = response.json()
    job_id = body["job_id"]
    assert response.headers["location"] == body["status_url"] == f"/densepose/video/{job_id}"

    seen = wait_for(client, job_id, finished)
    status = seen[-1]
    assert status["state"] == "done", status
    done = [s["progress"]["frames_done"] for s in seen]
    assert done == sorted(done) and done[-1] == FRAMES
    assert status["progress"] == {"frames_done": FRAMES, "frames_total": FRAMES}
    assert status["video"] == {
        "frames": FRAMES, "fps": FPS, "width": WIDTH, "height": HEIGHT,
        "duration_s": pytest.approx(FRAMES / FPS),
    }  # fmt: skip
    assert status["options"] == {
        "smooth": True,
        "flow": "dis",
        "radius": 1,
        "score_threshold": 0.2,
    }
    assert status["error"] is None and status["cancel_requested"] is False
    assert status["timings"]["running_s"] > 0 and status["timings"]["stages"]
    assert 0 < status["expires_in_s"] <= 3600
    assert status["results"] == {
        "npz": f"/densepose/video/{job_id}/result.npz",
        "parts_mp4": f"/densepose/video/{job_id}/parts.mp4",
        "viridis_mp4": f"/densepose/video/{job_id}/viridis.mp4",
    }  # paths on this service, whatever Host the client sent

    npz = client.get(status["results"]["npz"])
    assert npz.status_code == 200 and npz.headers["content-type"] == "application/x-npz"
    arrays = np.load(io.BytesIO(npz.content))
    for key in ("parts", "u", "v", "instances"):
        assert arrays[key].shape == (FRAMES, HEIGHT, WIDTH), key
    for kind in ("parts_mp4", "viridis_mp4"):
        video = client.get(status["results"][kind])
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        frames = decoded_frames(video.content, tmp_path / f"{kind}.mp4")
        assert len(frames) == FRAMES
        assert {frame.shape for frame in frames} == {(HEIGHT, WIDTH, 3)}

    files = job_files(client) - before
    assert not [path for path in files if path.name.startswith("input.")], "upload kept"
    assert client.delete(f"/densepose/video/{job_id}").status_code == 204
    assert job_files(client) == before
    assert_error(client.get(f"/densepose/video/{job_id}"), 404, "job_not_found")
    assert_error(client.get(status["results"]["npz"]), 404, "job_not_found")

    metrics = client.get("/metrics").text
    for sample in (
        'ddp_video_jobs_total{state="done"} 1.0',
        f"ddp_video_frames_total {float(FRAMES)}",
        'ddp_video_processing_seconds_count{stage="total"} 1.0',
        "ddp_video_jobs_running 0.0",
        "ddp_video_jobs_queued 0.0",
    ):
        assert sample in metrics, sample


def test_finished_jobs_expire_with_their_files(
    weights: Path, clip: bytes, tmp_path: Path, backend: dict[str, Any]
) -> None:
    with serve(weights, tmp_path, video_job_ttl_s=1.0, **backend) as client:
        job_id = post(client, clip).json()["job_id"]
        assert wait_for(client, job_id, finished)[-1]["state"] == "done"
        assert job_files(client)
        deadline = time.monotonic() + 10
        while client.get(f"/densepose/video/{job_id}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert job_files(client) == set()


# -- a stand-in pipeline: cancellation, bounds, failures ------------------------------------


class BlockingPipeline:
    """Stands in for ``process_video``: records which thread ran its model call, writes a
    partial output, reports ``frames_done`` frames (of at least ``FRAMES``) and blocks until
    cancelled (or raises ``error``)."""

    def __init__(self, error: Exception | None = None, frames_done: int = 1) -> None:
        self.error = error
        self.frames_done = frames_done
        self.model_threads: list[str] = []
        self.started = threading.Semaphore(0)

    def __call__(
        self,
        source: Path,
        out_dir: Path,
        predictor: object,
        options: object,
        *,
        progress: Callable[[int, int], None],
        cancelled: Callable[[], bool],
        run_model: Callable[[Callable[[], str]], str],
    ) -> None:
        self.model_threads.append(run_model(lambda: threading.current_thread().name))
        out_dir.mkdir(parents=True)
        (out_dir / "partial.npz").write_bytes(b"partial")
        progress(self.frames_done, max(FRAMES, self.frames_done))
        self.started.release()
        if self.error is not None:
            raise self.error
        while not cancelled():
            time.sleep(0.01)
        raise VideoCancelled()


@pytest.fixture
def blocking(monkeypatch: pytest.MonkeyPatch) -> BlockingPipeline:
    pipeline = BlockingPipeline()
    monkeypatch.setattr(service.jobs.worker, "process_video", pipeline)
    return pipeline


def test_cancel_a_running_job(
    client: TestClient, clip: bytes, blocking: BlockingPipeline, tmp_path: Path
) -> None:
    before = job_files(client)
    job_id = post(client, clip).json()["job_id"]
    assert blocking.started.acquire(timeout=30)
    status = client.get(f"/densepose/video/{job_id}").json()
    assert status["state"] == "running" and status["progress"]["frames_done"] == 1
    assert status["results"] is None and status["expires_in_s"] is None
    assert blocking.model_threads[0].startswith("ddp-model")
    assert_error(client.get(f"/densepose/video/{job_id}/parts.mp4"), 409, "job_not_done")

    image = cv2.imencode(".png", random_image(0))[1].tobytes()
    answer = client.post("/densepose", files={"file": ("x", image, "image/png")})
    assert answer.status_code == 200 and len(answer.json()["persons"]) == 3

    cancel = client.delete(f"/densepose/video/{job_id}")
    assert cancel.status_code == 202 and cancel.json()["cancel_requested"] is True
    status = wait_for(client, job_id, finished)[-1]
    assert status["state"] == "cancelled" and status["expires_in_s"] > 0
    assert job_files(client) == before
    assert_error(client.get(f"/densepose/video/{job_id}/result.npz"), 409, "job_not_done")
    assert client.delete(f"/densepose/video/{job_id}").status_code == 204
    assert_error(client.delete(f"/densepose/video/{job_id}"), 404, "job_not_found")


@pytest.mark.parametrize("declared", ["video/x-msvideo", "application/octet-stream"])
def test_raw_body_upload_is_accepted(
    client: TestClient, clip: bytes, blocking: BlockingPipeline, declared: str
) -> None:
    response = client.post("/densepose/video", content=clip, headers={"content-type": declared})
    assert response.status_code == 202, response.text
    assert client.delete(response.headers["location"]).status_code == 202
    job_id = response.json()["job_id"]
    assert wait_for(client, job_id, finished)[-1]["state"] == "cancelled"
    assert client.delete(f"/densepose/video/{job_id}").status_code == 204


def test_job_urls_are_paths_whatever_host_the_client_sends(
    client: TestClient, clip: bytes, blocking: BlockingPipeline
) -> None:
    headers = {"host": "evil.example.com", "x-forwarded-host": "evil.example.com"}
    files = {"file": ("clip", clip, "video/avi")}
    response = client.post("/densepose/video", files=files, headers=headers)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert response.headers["location"] == f"/densepose/video/{job_id}"
    assert response.json()["status_url"] == f"/densepose/video/{job_id}"
    assert client.delete(response.headers["location"]).status_code == 202
    assert wait_for(client, job_id, finished)[-1]["state"] == "cancelled"
    assert client.delete(f"/densepose/video/{job_id}").status_code == 204


def test_a_405_allows_every_method_of_the_path(client: TestClient) -> None:
    response = client.options("/densepose/video/0123456789abcdef")
    assert_error(response, 405, "http_405")
    assert response.headers["allow"] == "DELETE, GET"
    assert client.put("/densepose/video").headers["allow"] == "POST"


def test_a_job_batches_frames_as_the_model_batches_requests(
    client: TestClient, clip: bytes, blocking: BlockingPipeline
) -> None:
    response = post(client, clip)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    job = client.app.state.video_jobs.backend.store.get(job_id)  # type: ignore[attr-defined]
    reported = client.get("/v1/model").json()["batching"]["max_batch_size"]
    assert job.options.batch_size == reported == 4  # the CPU default
    assert client.delete(f"/densepose/video/{job_id}").status_code == 202
    assert wait_for(client, job_id, finished)[-1]["state"] == "cancelled"
    assert client.delete(f"/densepose/video/{job_id}").status_code == 204


def test_a_failing_job_reports_why_and_keeps_no_files(
    client: TestClient, clip: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = job_files(client)
    pipeline = BlockingPipeline(VideoError("the clip ends after frame 3 of 8 (truncated)"))
    monkeypatch.setattr(service.jobs.worker, "process_video", pipeline)
    job_id = post(client, clip).json()["job_id"]
    status = wait_for(client, job_id, finished)[-1]
    assert status["state"] == "failed"
    assert status["error"] == {
        "code": "invalid_video",
        "message": "the clip ends after frame 3 of 8 (truncated)",
    }
    assert job_files(client) == before
    pipeline.error = RuntimeError("a bug")
    job_id = post(client, clip).json()["job_id"]
    assert wait_for(client, job_id, finished)[-1]["error"]["code"] == "internal_error"
    assert job_files(client) == before
    # a container declaring fewer frames than it holds: stopped past the limit
    pipeline.error, pipeline.frames_done = None, MAX_FRAMES + 1
    job_id = post(client, clip).json()["job_id"]
    status = wait_for(client, job_id, finished)[-1]
    assert status["state"] == "failed" and status["error"]["code"] == "too_many_frames"
    assert job_files(client) == before


def test_jobs_beyond_the_bounds_are_429_and_queued_jobs_cancel_at_once(
    weights: Path, clip: bytes, blocking: BlockingPipeline, tmp_path: Path, backend: dict[str, Any]
) -> None:
    settings = {"video_max_running": 1, "video_max_queued": 1, **backend}
    with serve(weights, tmp_path, **settings) as client:
        running = post(client, clip).json()["job_id"]
        assert blocking.started.acquire(timeout=30)
        queued = post(client, clip).json()["job_id"]
        assert client.get(f"/densepose/video/{queued}").json()["state"] == "queued"
        before = job_files(client)

        refused = post(client, clip)
        assert_error(refused, 429, "too_many_jobs")
        assert int(refused.headers["retry-after"]) >= 1
        assert job_files(client) == before

        cancel = client.delete(f"/densepose/video/{queued}")
        assert cancel.status_code == 202 and cancel.json()["state"] == "cancelled"
        assert not (client.app.state.video_jobs.root / queued).exists()  # type: ignore[attr-defined]
        accepted = post(client, clip)
        assert accepted.status_code == 202
        metrics = client.get("/metrics").text
        assert "ddp_video_jobs_running 1.0" in metrics
        assert "ddp_video_jobs_queued 1.0" in metrics
        assert 'ddp_rejected_requests_total{reason="too_many_jobs"} 1.0' in metrics

        client.delete(f"/densepose/video/{running}")
        assert blocking.started.acquire(timeout=30)  # the waiting job starts in its place
        assert wait_for(client, running, finished)[-1]["state"] == "cancelled"
        status = client.get(f"/densepose/video/{accepted.json()['job_id']}").json()
        assert status["state"] == "running"
    # leaving ``serve`` handed the running job back to the queue: its files stay, for the
    # next start (``serve`` checks that nothing else is left)


# -- bad uploads: a clear error, and nothing left on disk -----------------------------------


def _bad_uploads(tmp_path: Path) -> dict[str, tuple[bytes, int, str]]:
    def clip(name: str, **options: Any) -> bytes:
        return write_clip(tmp_path / name, **options)

    mp4, avi = clip("clip.mp4", fourcc="mp4v"), clip("clip.avi")
    h264 = write_h264(
        tmp_path / "faststart.mp4", frames=FRAMES, height=HEIGHT, width=WIDTH, fps=FPS
    )
    return {
        "empty": (b"", 400, "empty_body"),
        "not_a_video": (b"hello, world" * 100, 415, "unsupported_video"),
        "zero_frames": (clip("none.avi", frames=0), 422, "invalid_video"),
        "truncated_mp4": (mp4[: len(mp4) // 2], 422, "invalid_video"),  # no index: unreadable
        "truncated_avi": (avi[: len(avi) // 2], 422, "invalid_video"),  # 4 of its 8 frames
        # index first: it probes, and 3 of its 8 frames are whole
        "truncated_faststart_mp4": (h264[: len(h264) * 7 // 10], 422, "invalid_video"),
        "mp4_cut_in_its_last_frame": (h264[:-16], 422, "invalid_video"),
        "over_byte_limit": (b"RIFF" + bytes(MAX_BYTES), 413, "upload_too_large"),
        "too_many_frames": (clip("long.avi", frames=MAX_FRAMES + 1), 413, "too_many_frames"),
        "too_many_pixels": (clip("wide.avi", width=2 * WIDTH), 413, "too_many_pixels"),
        "too_long": (clip("slow.avi", frames=MAX_FRAMES, fps=5.0), 413, "video_too_long"),
    }


def test_bad_uploads(client: TestClient, tmp_path: Path) -> None:
    before = job_files(client)
    for name, (data, status, code) in _bad_uploads(tmp_path).items():
        response = post(client, data)
        assert response.status_code == status, (name, response.text)
        assert response.json()["error"]["code"] == code, name
        for declared in ("video/mp4", "application/octet-stream"):
            headers = {"content-type": declared}
            raw = client.post("/densepose/video", content=data, headers=headers)
            assert raw.json()["error"]["code"] == code, (name, declared)
        assert job_files(client) == before, name


def test_wrong_content_type_and_missing_file_part(client: TestClient, clip: bytes) -> None:
    before = job_files(client)
    plain = client.post("/densepose/video", content=clip, headers={"content-type": "text/plain"})
    assert_error(plain, 415, "unsupported_media_type")
    other_part = client.post("/densepose/video", files={"video": ("x", clip, "video/avi")})
    assert_error(other_part, 400, "missing_file")
    assert job_files(client) == before


@pytest.mark.parametrize(
    "params",
    [
        "?flow=raft",  # no RAFT weights configured
        "?flow=farneback",
        "?radius=0",
        "?radius=9",
        "?score_threshold=1.5",
        "?smooth=maybe",
        "?unknown_option=1",
    ],
)
def test_absurd_options_are_422(client: TestClient, clip: bytes, params: str) -> None:
    before = job_files(client)
    response = post(client, clip, params)
    assert_error(response, 422, "invalid_request")
    assert params[1:].split("=")[0] in response.json()["error"]["message"]
    assert job_files(client) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("DELETE", ""),
        ("GET", "/result.npz"),
        ("GET", "/parts.mp4"),
        ("GET", "/viridis.mp4"),
    ],
)
def test_unknown_job_is_404(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, f"/densepose/video/0123456789abcdef{path}")
    assert_error(response, 404, "job_not_found")


def test_openapi_documents_the_video_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    submit = paths["/densepose/video"]["post"]
    assert {p["name"] for p in submit["parameters"]} == {
        "smooth",
        "flow",
        "radius",
        "score_threshold",
    }
    assert {"multipart/form-data", "video/mp4"} <= set(submit["requestBody"]["content"])
    assert {"202", "413", "415", "422", "429"} <= set(submit["responses"])
    status = paths["/densepose/video/{job_id}"]
    assert status["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/VideoJobStatus"
    }
    assert {"202", "204", "404"} <= set(status["delete"]["responses"])
    for result in ("result.npz", "parts.mp4", "viridis.mp4"):
        assert "409" in paths[f"/densepose/video/{{job_id}}/{result}"]["get"]["responses"]
