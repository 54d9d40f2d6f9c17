"""``DensePoseClient``'s video methods against the app served in this process (uvicorn in a
thread, the untrained ``tiny`` network): submit, wait with progress, download, cancel and
delete; and its errors: a job that stops, a wait that times out, a refused upload."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import uvicorn

import service.jobs.worker
from model.outputs.npz import read_npz
from model.video import VideoCancelled
from service.app import create_app
from service.client import AsyncDensePoseClient, DensePoseClient, ServiceError, VideoJobError
from service.settings import Settings
from service.testing import stray_job_files

FRAMES, HEIGHT, WIDTH = 6, 64, 96


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 frames of 64 × 96 moving noise, MJPG in AVI."""
    path = tmp_path_factory.mktemp("clips") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (WIDTH, HEIGHT))
    assert writer.isOpened()
    noise = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH + FRAMES, 3), np.uint8)
    for index in range(FRAMES):
        writer.write(np.ascontiguousarray(noise[:, index : index + WIDTH]))
    writer.release()
    return path


@pytest.fixture(scope="module")
def jobs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory, jobs_root: Path) -> Iterator[str]:
    """The URL of the app under uvicorn on a loopback port of this process; once all tests
    ran, the app stopped and left no file but its jobs'."""
    settings = Settings(
        weights=tmp_path_factory.mktemp("weights") / "missing.safetensors",
        untrained_config="tiny",
        device="cpu",
        torch_threads=1,
        max_wait_ms=0,
        video_jobs_root=jobs_root,
    )
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(60)
        listener.close()
    assert not thread.is_alive()
    assert stray_job_files(settings) == []


@pytest.fixture(scope="module")
def client(server_url: str) -> Iterator[DensePoseClient]:
    with DensePoseClient(server_url) as test_client:
        test_client.wait_until_ready(timeout_s=120)
        yield test_client


def test_submit_wait_download_and_delete(
    client: DensePoseClient, clip: Path, tmp_path: Path
) -> None:
    job_id = client.submit_video(clip, radius=1, smooth=True, flow=None)
    progress: list[tuple[int, int]] = []
    status = client.wait_video(
        job_id, poll_s=0.02, timeout_s=120, progress=lambda *done: progress.append(done)
    )
    assert status["state"] == "done" and status["options"]["radius"] == 1
    assert progress[-1] == (FRAMES, FRAMES)
    frames_done = [done for done, _ in progress]
    assert frames_done == sorted(frames_done) and len(set(progress)) == len(progress)

    arrays = read_npz(client.download_video(job_id, "result.npz"))
    assert arrays["parts"].shape == (FRAMES, HEIGHT, WIDTH)
    assert arrays["parts"].dtype == np.uint8
    saved = client.download_video(job_id, "parts.mp4", tmp_path / "parts.mp4")
    capture = cv2.VideoCapture(str(saved))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    capture.release()

    assert client.cancel_video(job_id) is None  # finished: deleted with its files
    with pytest.raises(ServiceError) as gone:
        client.video_status(job_id)
    assert (gone.value.status, gone.value.code) == (404, "job_not_found")
    with pytest.raises(ServiceError, match="job_not_found"):
        client.download_video(job_id, "viridis.mp4", tmp_path / "viridis.mp4")
    assert not (tmp_path / "viridis.mp4").exists()


def _stop_when_cancelled(*_: object, cancelled: Callable[[], bool], **__: object) -> None:
    """Stands in for ``process_video``: runs until the job is cancelled."""
    while not cancelled():
        time.sleep(0.01)
    raise VideoCancelled()


def test_timeout_cancel_and_a_stopped_job(
    client: DensePoseClient, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.jobs.worker, "process_video", _stop_when_cancelled)
    job_id = client.submit_video(clip.read_bytes())
    progress: list[tuple[int, int]] = []
    with pytest.raises(TimeoutError, match=job_id):
        client.wait_video(
            job_id, timeout_s=0.2, poll_s=0.05, progress=lambda *p: progress.append(p)
        )
    assert progress == [(0, FRAMES)]  # reported once: it never changed
    with pytest.raises(ServiceError) as not_done:
        client.download_video(job_id, "result.npz")
    assert (not_done.value.status, not_done.value.code) == (409, "job_not_done")

    asked = client.cancel_video(job_id)
    assert asked is not None and asked["cancel_requested"] is True
    with pytest.raises(VideoJobError) as stopped:
        client.wait_video(job_id, poll_s=0.02, timeout_s=30)
    assert stopped.value.state == stopped.value.code == "cancelled"
    assert client.cancel_video(job_id) is None
    with pytest.raises(ServiceError, match="job_not_found"):
        client.cancel_video(job_id)


def test_refused_upload_and_unknown_result(client: DensePoseClient, clip: Path) -> None:
    with pytest.raises(ServiceError) as refused:
        client.submit_video(b"not a video" * 10)
    assert (refused.value.status, refused.value.code) == (415, "unsupported_video")
    with pytest.raises(ServiceError) as invalid:
        client.submit_video(clip, radius=0)
    assert (invalid.value.status, invalid.value.code) == (422, "invalid_request")
    with pytest.raises(ValueError, match=r"result\.json"):
        client.download_video("0123", "result.json")  # type: ignore[call-overload]


def test_the_async_client_serves_images_at_once_and_a_job_to_its_end(
    server_url: str, clip: Path, tmp_path: Path
) -> None:
    images = [np.full((HEIGHT, WIDTH, 3), value, np.uint8) for value in (0, 128, 255)]

    async def run() -> tuple[list[dict[str, Any]], dict[str, Any], Path, dict[str, Any] | None]:
        async with AsyncDensePoseClient(server_url) as client:
            await client.wait_until_ready(timeout_s=120)
            answers = await asyncio.gather(*(client.predict(image) for image in images))
            job_id = await client.submit_video(clip, radius=1)
            status = await client.wait_video(job_id, poll_s=0.02, timeout_s=120)
            saved = await client.download_video(job_id, "viridis.mp4", tmp_path / "v.mp4")
            return answers, status, saved, await client.cancel_video(job_id)

    answers, status, saved, deleted = asyncio.run(run())
    assert [answer["image"] for answer in answers] == [{"height": HEIGHT, "width": WIDTH}] * 3
    assert status["state"] == "done" and status["progress"]["frames_done"] == FRAMES
    capture = cv2.VideoCapture(str(saved))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    capture.release()
    assert deleted is None
