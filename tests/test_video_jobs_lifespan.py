"""An app's lifespan may run more than once (test clients, embedding servers): the video jobs
stop with it and start again with it, and accept uploads after the second start as after the
first."""

from __future__ import annotations

import time
from pathlib import Path

from clips import clips
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings


def test_an_app_started_again_after_a_stop_accepts_video_jobs(tmp_path: Path) -> None:
    settings = Settings(
        weights=tmp_path / "missing.safetensors",
        untrained_config="tiny",
        device="cpu",
        torch_threads=1,
        warmup=False,
        max_wait_ms=0,
        video_jobs_root=tmp_path / "video-jobs",
        video_worker=False,  # the jobs stay queued: only the uploads are under test
    )
    app = create_app(settings)
    clip = clips()[0]
    for start in range(2):
        with TestClient(app) as client:
            deadline = time.monotonic() + 60
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, client.get("/readyz").json()
                time.sleep(0.02)
            response = client.post(
                "/densepose/video", files={"file": ("clip.mp4", clip, "video/mp4")}
            )
            assert response.status_code == 202, (start, response.text)
