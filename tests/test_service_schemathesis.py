"""A CI-sized schema fuzz of the service (schemathesis, in-process ASGI, a tiny untrained
network, the embedded video job queue and the app's own worker): for requests generated from
the app's own OpenAPI document, valid and invalid, on every operation (images, video jobs and
their results, health, model info, metrics), no 5xx, and every answer as the document says
(status, content type, headers, body schema); afterwards no file but those of the jobs that
exist.

No JSON schema says which bytes decode or which job ids exist, so the fuzzer is told: real
images and clips for the upload bodies, and among the job ids it draws, those of jobs made
before the run (one done and one cancelled to read, one done to delete) and of the jobs its
own uploads made (to cancel)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zlib import crc32

import pytest
import schemathesis
from clips import clips  # tests/clips.py
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torchvision.models.optical_flow import raft_small

from service.app import create_app
from service.decoding import MEDIA_TYPES
from service.settings import Settings
from service.testing import encode, random_image, stray_job_files
from service.video_uploads import RAW_MEDIA_TYPES

READY_TIMEOUT_S = 120.0
"""Only a safety net for the model load and the jobs made before the run: the fixture waits
for states, not time."""
MAX_EXAMPLES = 5
"""Per operation, in the fuzzing phase (the coverage phase adds its own, a fixed set)."""
OCTET_STREAM = "application/octet-stream"
Case = schemathesis.Case[Any]

IMAGES = [encode(random_image(seed), name) for seed, name in enumerate(("PNG", "JPEG", "WEBP"))]
"""What a documented image body is: no JSON schema says "decodable", so the fuzzer is told."""
CLIPS = clips()
"""What a documented video body is (the service reads the container from the bytes, so any
clip goes with any of the video content types)."""
for media_type in (*MEDIA_TYPES.values(), OCTET_STREAM):
    schemathesis.openapi.media_type(media_type, st.sampled_from(IMAGES))
for media_type in RAW_MEDIA_TYPES:
    if media_type != OCTET_STREAM:  # the images' (see _no_image_for_a_video)
        schemathesis.openapi.media_type(media_type, st.sampled_from(CLIPS))


def _raft_weights(path: Path) -> Path:
    """Random ``raft_small`` weights: the service documents ``flow=raft`` as a valid option,
    and only a service with RAFT weights accepts it (see the report of issue 17)."""
    state = raft_small(weights=None, progress=False).state_dict()
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(path))
    return path


def _settings(root: Path) -> Settings:
    return Settings(
        weights=root / "missing.safetensors",
        untrained_config="tiny",
        device="cpu",
        runtime="torch",
        torch_threads=1,
        warmup=False,
        max_upload_bytes=1_000_000,
        max_image_pixels=4_000_000,
        max_wait_ms=0,
        video_max_bytes=1_000_000,
        video_max_queued=64,  # room for every clip the run sends: few 429s
        video_jobs_root=root / "video-jobs",
        video_raft_weights=root / "raft.safetensors",
    )


schema = schemathesis.openapi.from_dict(create_app(_settings(Path("unused"))).openapi())
"""The app's own document (the same for any settings); the app the cases go to is made per
run, in a temporary directory (``service``)."""


@schema.hook("filter_case")
def _no_image_for_a_video(context: schemathesis.HookContext, case: Case) -> bool:
    """Drops the video route's ``application/octet-stream`` bodies and parts: that media type
    has one strategy for every operation, the images, and the image routes take it too. (A
    clip swapped in afterwards would be judged schema-violating: schemathesis cannot validate
    an edited binary body.) Its other content types carry clips; the service reads the
    container from the bytes whatever the declared type, so no code path goes unfuzzed."""
    if case.path != "/densepose/video":
        return True
    declared = (case.multipart_content_types or {}).get("file", case.media_type)
    return declared != OCTET_STREAM


@dataclass
class Service:
    """The app under test and the jobs its cases may name, by method: ``GET`` reads one done
    and one cancelled job made before the run; ``DELETE`` removes a done one made before the
    run, and cancels (or removes) those the run's uploads made."""

    app: FastAPI
    known_jobs: dict[str, list[str]] = field(default_factory=dict)

    def call(self, case: Case) -> schemathesis.Response:
        return case.call(app=self.app)

    def wait(
        self, path: str, done: Callable[[schemathesis.Response], bool], **parameters: Any
    ) -> schemathesis.Response:
        """GET ``path`` until ``done(response)``; the last response. The app's lifespan
        starts on its first call in each test (schemathesis stops it after each)."""
        operation = schema[path]["GET"]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not done(response := self.call(operation.Case(**parameters))):
            assert time.monotonic() < deadline, f"{path}: {response.status_code} {response.text}"
            time.sleep(0.05)
        return response

    def wait_ready(self) -> None:
        self.wait("/readyz", lambda response: response.status_code == 200)

    def submit(self, clip: bytes) -> str:
        """A job on ``clip`` without smoothing (the cheapest); its id."""
        case = schema["/densepose/video"]["POST"].Case(
            body=clip, media_type="video/mp4", query={"smooth": "false"}
        )
        response = self.call(case)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["job_id"]
        return job_id

    def wait_finished(self, job_id: str) -> None:
        self.wait(
            "/densepose/video/{job_id}",
            lambda r: r.status_code == 200 and r.json()["state"] in ("done", "cancelled"),
            path_parameters={"job_id": job_id},
        )

    def remember(self, case: Case, response: schemathesis.Response) -> None:
        """A job the run's upload made becomes one to cancel."""
        if case.path == "/densepose/video" and response.status_code == 202:
            self.known_jobs["DELETE"].append(response.json()["job_id"])

    def naming_known_jobs(self, case: Case) -> Case:
        """``case``, for most positive cases of a job's routes with a known job's id instead
        of the drawn one (picked by a hash of the drawn id: deterministic)."""
        parameters = case.path_parameters or {}
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        if "job_id" in parameters and positive:
            choices = [parameters["job_id"], *self.known_jobs.get(case.method.upper(), [])]
            drawn = str(parameters["job_id"]).encode()
            case.path_parameters = {**parameters, "job_id": choices[crc32(drawn) % len(choices)]}
        return case


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The app, ready, with its known jobs; at the end, no stray job file."""
    config = _settings(tmp_path_factory.mktemp("schemathesis"))
    assert config.video_raft_weights is not None
    _raft_weights(config.video_raft_weights)
    service = Service(create_app(config))
    service.wait_ready()
    done, removable, cancelled = (service.submit(clip) for clip in CLIPS)
    # The one worker has the first job, so the third is still queued: cancelled at once.
    cancel = schema["/densepose/video/{job_id}"]["DELETE"].Case(
        path_parameters={"job_id": cancelled}
    )
    assert service.call(cancel).status_code == 202
    for job_id in (done, removable, cancelled):
        service.wait_finished(job_id)
    service.known_jobs = {"GET": [done, cancelled], "DELETE": [removable]}
    yield service
    # (schemathesis stops the app's lifespan in its own teardown, before this fixture's.)
    assert stray_job_files(config) == []


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_answers_as_documented(case: Case, service: Service) -> None:
    service.wait_ready()
    response = service.naming_known_jobs(case).call_and_validate(app=service.app)
    service.remember(case, response)
