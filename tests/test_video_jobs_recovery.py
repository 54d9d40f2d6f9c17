"""Video jobs that outlive their processes, with real components: ``ddp serve`` and
``ddp worker`` processes (uvicorn, the tiny random network), a real ``redis-server``, the
embedded SQLite queue. Workers are killed with SIGKILL mid-job, APIs restarted, and every job
must still answer and finish with the outputs an undisturbed run writes. Waits are bounded by
generous deadlines; nothing here asserts a speed."""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import torch

from model.inference.predictor import Predictor
from model.video import process_video
from service.jobs.records import JobRecord
from service.jobs.redis_store import RedisJobStore
from service.jobs.store import JobStore, SqliteJobStore
from service.testing import (
    ServerProcess,
    WorkerProcess,
    random_image,
    redis_server,
    tiny_checkpoint,
)

# Five processes start a model each: on a busy 2-core machine that alone can take minutes.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

FRAMES, HEIGHT, WIDTH, FPS = 60, 64, 96, 10.0
"""Long enough (several seconds of the tiny network) to kill a worker in the middle."""
DEADLINE_S = 600.0


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 frames of moving noise, MJPG in AVI."""
    path = tmp_path_factory.mktemp("clips") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    base = random_image(0, HEIGHT, WIDTH + FRAMES)
    for index in range(FRAMES):
        writer.write(np.ascontiguousarray(base[:, index : index + WIDTH]))
    writer.release()
    return path


def _settings(weights: Path, jobs_root: Path, **more: str) -> dict[str, str]:
    return {
        "weights": str(weights),
        "device": "cpu",
        "torch_threads": "1",
        "max_wait_ms": "0",
        "video_jobs_root": str(jobs_root),
        "video_job_lease_s": "2",
        "drain_timeout_s": "10",
        **more,
    }


def _submit(url: str, clip: Path) -> str:
    files = {"file": ("clip.avi", clip.read_bytes(), "video/avi")}
    response = httpx.post(f"{url}/densepose/video", files=files, timeout=60)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _status(url: str, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/densepose/video/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _wait(
    urls: Callable[[], list[str]], job_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll the job on each API in turn until ``done(status)``: every one answers for it."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        for url in urls():
            status = _status(url, job_id)
            if done(status):
                return status
            assert time.monotonic() < deadline, status
        time.sleep(0.02)


def _running_mid_job(status: dict[str, Any]) -> bool:
    assert status["state"] in ("queued", "running"), status  # it must not finish first
    return status["state"] == "running" and status["progress"]["frames_done"] >= 1


def _finished(status: dict[str, Any]) -> bool:
    return status["state"] in ("done", "failed", "cancelled")


def _reference(record: JobRecord, weights: Path, clip: Path, out: Path) -> dict[str, np.ndarray]:
    """The NPZ of the job's clip and options, run here, undisturbed, with the servers' one
    torch thread (another thread count sums the convolutions in another order: last-bit
    differences in U and V)."""
    predictor = Predictor.from_checkpoint(weights, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(int(_settings(weights, out)["torch_threads"]))
    try:
        outputs = process_video(clip, out, predictor, record.options)
    finally:
        torch.set_num_threads(threads)
    with np.load(outputs.npz) as arrays:
        return {key: arrays[key] for key in arrays.files}


def _check_results(url: str, job_id: str, reference: dict[str, np.ndarray], tmp: Path) -> None:
    npz = httpx.get(f"{url}/densepose/video/{job_id}/result.npz", timeout=60)
    assert npz.status_code == 200, npz.text
    with np.load(io.BytesIO(npz.content)) as arrays:
        assert sorted(arrays.files) == sorted(reference)
        for key, expected in reference.items():
            np.testing.assert_array_equal(arrays[key], expected, err_msg=key)
    for kind in ("parts", "viridis"):
        video = httpx.get(f"{url}/densepose/video/{job_id}/{kind}.mp4", timeout=60)
        assert video.status_code == 200
        path = tmp / f"{job_id}.{kind}.mp4"
        path.write_bytes(video.content)
        capture = cv2.VideoCapture(str(path))
        frames = 0
        while capture.read()[0]:
            frames += 1
        capture.release()
        assert frames == FRAMES, kind


def _no_partial_outputs(jobs_root: Path) -> list[Path]:
    return list((jobs_root / "jobs").glob("*/.attempt-*"))


def test_redis_two_apis_a_killed_worker_and_a_restarted_api(
    weights: Path, clip: Path, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        url = stack.enter_context(redis_server(tmp_path / "redis"))
        settings = _settings(
            weights, tmp_path / "shared", video_queue_url=url, video_worker="false"
        )
        store: JobStore = RedisJobStore(url)
        stack.callback(store.close)

        def api(name: str) -> ServerProcess:
            log = tmp_path / f"{name}.log"
            return ServerProcess(settings, log_path=log, ready_timeout_s=DEADLINE_S).__enter__()

        apis = [api("api-a"), api("api-b")]
        stack.callback(lambda: [server.stop() for server in apis])
        workers = [WorkerProcess(settings, log_path=tmp_path / "worker-1.log")]
        stack.callback(lambda: [worker.stop() for worker in workers])

        job_ids = [_submit(apis[0].url, clip) for _ in range(3)]  # submitted to one API ...
        for job_id in job_ids:  # ... every job answers on the other
            assert _status(apis[1].url, job_id)["state"] in ("queued", "running")
        _wait(lambda: [apis[1].url], job_ids[0], _running_mid_job)
        workers[0].kill()
        for job_id in job_ids:  # no worker now: nothing lost, nothing finished
            assert _status(apis[0].url, job_id)["state"] in ("queued", "running")

        workers.append(WorkerProcess(settings, log_path=tmp_path / "worker-2.log"))
        apis[0].stop()  # a restarted API replica answers for every job
        apis[0] = api("api-a-restarted")
        for job_id in job_ids:
            status = _wait(lambda: [server.url for server in apis], job_id, _finished)
            assert status["state"] == "done", status
            assert status["progress"] == {"frames_done": FRAMES, "frames_total": FRAMES}

        killed = store.get(job_ids[0])
        assert killed is not None and killed.attempts == 2, "the killed job ran again"
        reference = _reference(killed, weights, clip, tmp_path / "reference")
        for job_id, server in zip(job_ids, [*apis, apis[0]], strict=True):
            _check_results(server.url, job_id, reference, tmp_path)
        assert _no_partial_outputs(tmp_path / "shared") == []


def test_sqlite_a_killed_serve_process_restarts_and_finishes_its_jobs(
    weights: Path, clip: Path, tmp_path: Path
) -> None:
    settings = _settings(weights, tmp_path / "jobs-root")  # the default: in-process worker
    first, second = (
        ServerProcess(settings, log_path=tmp_path / f"serve-{n}.log", ready_timeout_s=DEADLINE_S)
        for n in (1, 2)
    )
    with first as server:
        job_ids = [_submit(server.url, clip) for _ in range(2)]
        _wait(lambda: [server.url], job_ids[0], _running_mid_job)
        os.kill(server.pid, signal.SIGKILL)
        assert server.stop() == -signal.SIGKILL
    with second as restarted:
        for job_id in job_ids:  # every job an earlier process accepted answers, and finishes
            status = _wait(lambda: [restarted.url], job_id, _finished)
            assert status["state"] == "done", status
        store = SqliteJobStore(tmp_path / "jobs-root" / "queue.sqlite3")
        killed = store.get(job_ids[0])
        store.close()
        assert killed is not None and killed.attempts == 2, "the killed job ran again"
        reference = _reference(killed, weights, clip, tmp_path / "reference")
        for job_id in job_ids:
            _check_results(restarted.url, job_id, reference, tmp_path)
        assert _no_partial_outputs(tmp_path / "jobs-root") == []
