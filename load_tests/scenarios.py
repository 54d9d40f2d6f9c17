"""What the load tests send, independent of Locust (which patches the standard library with
gevent when imported, so the test suite never imports it): the pre-rendered images, the
scenarios, request names tagged by person count, and the video job flow.

Requests go through a :class:`Send` function (Locust's ``HttpSession.request``, or
starlette's ``TestClient`` in the tests), so the same code runs under both.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

IMAGES_DIR = Path(__file__).resolve().parent / "images"
DEFAULT_HOST = "http://127.0.0.1:8000"
"""Where ``ddp serve`` listens unless told otherwise: the load tests' default target."""
PERSON_COUNTS = (0, 1, 3, 8, 15)
"""Persons in the pre-rendered images (``make_images.py``)."""
CLIP_NAME = "clip.mp4"
SCENARIOS = (*(f"persons-{n}" for n in PERSON_COUNTS), "mixed", "video")
"""``persons-N``: every request the image with N persons; ``mixed``: each request one of
the images, uniformly at random; ``video``: video jobs (submit, poll, download)."""
FINISHED = ("done", "failed", "cancelled")


def image_path(persons: int) -> Path:
    return IMAGES_DIR / f"persons_{persons:02d}.jpg"


def image_name(persons: int) -> str:
    """The request name Locust groups statistics by: one line per person count."""
    return f"/densepose [{persons} persons]"


REJECTED_SUFFIX = " [rejected 503]"
"""Appended to a request's name when the service refused it (queue full), so the accepted
requests' latencies stay apart from the (fast) refusals."""
VIDEO_NAMES = {
    "submit": "/densepose/video [submit]",
    "poll": "/densepose/video/{id} [poll]",
    "result": "/densepose/video/{id}/result.npz",
    "job": "video job [submit to result]",
}


def load_images(counts: tuple[int, ...] = PERSON_COUNTS) -> dict[int, bytes]:
    """The JPEG bytes of each count's image; a clear error if they were not rendered."""
    missing = [str(image_path(n)) for n in counts if not image_path(n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"missing {missing}: render them with `python -m load_tests.make_images`"
        )
    return {n: image_path(n).read_bytes() for n in counts}


def pick_persons(scenario: str, rng: random.Random) -> int:
    """The person count of the next image request of an image scenario."""
    if scenario == "mixed":
        return rng.choice(PERSON_COUNTS)
    prefix = "persons-"
    if scenario.startswith(prefix) and int(scenario[len(prefix) :]) in PERSON_COUNTS:
        return int(scenario[len(prefix) :])
    raise ValueError(f"not an image scenario: {scenario!r}; choose one of {SCENARIOS[:-1]}")


def image_files(persons: int, images: Mapping[int, bytes]) -> dict[str, tuple[str, bytes, str]]:
    """The multipart ``files`` of one ``POST /densepose``."""
    return {"file": (image_path(persons).name, images[persons], "image/jpeg")}


@dataclass
class TaskBudget:
    """A run bounded by a count of tasks (image requests or video jobs, all users together)
    rather than by time: ``limit`` tasks start, and the run ends when the last one finished.

    Locust runs one user greenlet at a time, so the counts need no lock.
    """

    limit: int | None
    """None: no bound (the run's time bounds it)."""
    started: int = 0
    finished: int = 0

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"a run needs at least 1 task, got {self.limit}")

    def take(self) -> bool:
        """Whether one more task may start (it then counts as started)."""
        if self.limit is not None and self.started >= self.limit:
            return False
        self.started += 1
        return True

    def finish(self) -> bool:
        """Count a finished task; whether it was the run's last."""
        self.finished += 1
        return self.finished == self.limit


class Response(Protocol):
    status_code: int
    content: bytes

    def json(self) -> Any: ...


class Send(Protocol):
    def __call__(self, method: str, path: str, *, name: str, **kwargs: Any) -> Response: ...


@dataclass
class VideoJobRun:
    """One video job as a client saw it.

    Attributes:
        state: the job's last state (``done``, ``failed``, ``cancelled``), ``timeout`` when
            polling gave up, or ``rejected <status>`` when the upload was refused.
        job_id: None when rejected.
        polls: status requests made.
        seconds: from the upload to the downloaded result (or to giving up).
        result_bytes: size of the downloaded NPZ (0 unless done).
    """

    state: str
    job_id: str | None
    polls: int
    seconds: float
    result_bytes: int


def run_video_job(
    send: Send,
    clip: bytes,
    *,
    poll_s: float,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> VideoJobRun:
    """Upload ``clip`` (MP4), poll the job every ``poll_s`` until it finishes (at most
    ``timeout_s``), download ``result.npz`` when it is done."""
    start = time.monotonic()
    accepted = send(
        "POST",
        "/densepose/video",
        name=VIDEO_NAMES["submit"],
        files={"file": (CLIP_NAME, clip, "video/mp4")},
    )
    if accepted.status_code != 202:
        return VideoJobRun(f"rejected {accepted.status_code}", None, 0, 0.0, 0)
    job_id = str(accepted.json()["job_id"])
    status_path = f"/densepose/video/{job_id}"
    polls, state = 0, "queued"
    while state not in FINISHED:
        if time.monotonic() - start > timeout_s:
            return VideoJobRun("timeout", job_id, polls, time.monotonic() - start, 0)
        sleep(poll_s)
        polled = send("GET", status_path, name=VIDEO_NAMES["poll"])
        polls += 1
        if polled.status_code == 200:
            state = str(polled.json()["state"])
    size = 0
    if state == "done":
        size = len(send("GET", f"{status_path}/result.npz", name=VIDEO_NAMES["result"]).content)
    return VideoJobRun(state, job_id, polls, time.monotonic() - start, size)


def report_parser(module: str, doc: str, stem: str) -> argparse.ArgumentParser:
    """The arguments every load test against a running service takes: ``--host`` and
    ``--out`` (the folder for ``stem``.json/.md/.png); the first line of ``doc`` describes it."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n")[0])
    parser.add_argument("--host", default=DEFAULT_HOST, help="a running service")
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {stem}.*")
    return parser


def served_environment(
    host: str, *, module: str, argv: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The running service's ``/v1/model`` and this run's environment (its torch threads)."""
    import httpx

    from benchmarks.common import environment

    server: dict[str, Any] = httpx.get(f"{host}/v1/model", timeout=10).raise_for_status().json()
    return server, environment(
        module=module, argv=argv, threads=int(server.get("torch_threads", 0))
    )
