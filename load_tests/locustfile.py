"""Locust scenarios for the DDP service. Run from the repository root (so that
``load_tests`` imports), e.g. headless, 4 users, 60 s, statistics in
``out/mixed_{stats,failures}.csv``::

    .venv/bin/python -m locust -f load_tests/locustfile.py --host http://127.0.0.1:8000 \\
        --scenario mixed --headless -u 4 -r 4 -t 60s --stats-csv out/mixed --only-summary

``--scenario`` (``load_tests.scenarios.SCENARIOS``): ``persons-0|1|3|8|15`` (every request
the image with that many persons), ``mixed`` (a random one of those per request), ``video``
(upload ``images/clip.mp4``, poll the job every ``--video-poll-s``, download the NPZ).
Users are closed loops (the next request when the answer is in). ``-t`` bounds a run by
time; ``--tasks N`` by count: N tasks (requests, video jobs) of all users together start, and
the run ends once they are done, however slow they are (the tests use it; ``-t`` is then a
safety net). ``--video-clip`` names another MP4 to upload. ``--image-users K`` (``video``
only): K of the users send images (``--image-scenario``, closed loops) for as long as the
video jobs run, outside the ``--tasks`` count: the image endpoint's latency under a video
load. Statistics are split by request name: ``/densepose [N persons]``; refusals (503, queue
full) are failures named ``... [rejected 503]``; a whole video job is one ``JOB`` entry
(``video job [submit to result]``) besides its HTTP requests.
"""

from __future__ import annotations

import csv
import itertools
import random
from pathlib import Path
from typing import Any

import gevent
from locust import HttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from load_tests.scenarios import (
    CLIP_NAME,
    IMAGES_DIR,
    REJECTED_SUFFIX,
    SCENARIOS,
    VIDEO_NAMES,
    TaskBudget,
    image_files,
    image_name,
    load_images,
    pick_persons,
    run_video_job,
)

IMAGES = load_images()
_USER_INDEX = itertools.count()
"""Users in the order they start: the index seeds each one's choices and picks its role."""


def _arguments(parser: Any) -> None:
    parser.add_argument("--scenario", choices=SCENARIOS, default="mixed", help="what to send")
    parser.add_argument("--video-poll-s", type=float, default=0.5, help="status poll interval")
    parser.add_argument("--video-timeout-s", type=float, default=600.0, help="give up a job")
    parser.add_argument(
        "--video-clip", default=str(IMAGES_DIR / CLIP_NAME), help="the MP4 a video job uploads"
    )
    parser.add_argument(
        "--image-users", type=int, default=0, metavar="K",
        help="video scenario: K of the users send images meanwhile (not counted in --tasks)",
    )  # fmt: skip
    parser.add_argument(
        "--image-scenario", choices=SCENARIOS[:-1], default="persons-3",
        help="what the --image-users send",
    )  # fmt: skip
    parser.add_argument(
        "--tasks", type=int, metavar="N",
        help="end the run once N tasks (requests, video jobs; all users) are done",
    )  # fmt: skip
    parser.add_argument(
        "--stats-csv", metavar="PREFIX",
        help="write PREFIX_stats.csv and PREFIX_failures.csv (Locust's --csv format) once "
        "every user has stopped: complete, unlike --csv, which can miss the last second",
    )  # fmt: skip


events.init_command_line_parser.add_listener(_arguments)


@events.test_start.add_listener
def _start_budget(environment: Environment, **_: Any) -> None:
    options: Any = environment.parsed_options
    DensePoseUser.budget = TaskBudget(options.tasks)
    if options.scenario == "video":
        DensePoseUser.clip = Path(options.video_clip).read_bytes()


@events.quitting.add_listener
def _write_stats(environment: Environment, **_: Any) -> None:
    """The final statistics: ``quitting`` fires after the runner stopped every user."""
    prefix = environment.parsed_options.stats_csv
    if prefix is None:
        return
    tables = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (("stats", tables.requests_csv), ("failures", tables.failures_csv)):
        with open(f"{prefix}_{suffix}.csv", "w", newline="") as handle:
            write(csv.writer(handle))


class DensePoseUser(HttpUser):
    wait_time = constant(0)
    budget = TaskBudget(None)
    """The run's ``--tasks`` count, shared by all users (set at the start of the run)."""
    clip = b""
    """The ``--video-clip`` bytes (read at the start of a video run)."""

    def on_start(self) -> None:
        index = next(_USER_INDEX)
        self.rng = random.Random(index)
        # an image sender beside the video jobs, outside the task count
        self.background = self.options.scenario == "video" and index < self.options.image_users

    @property
    def options(self) -> Any:
        environment: Environment = self.environment
        return environment.parsed_options

    @task
    def request(self) -> None:
        if self.background:  # until the last video job is done (it ends the run)
            self.image(pick_persons(self.options.image_scenario, self.rng))
            return
        if not self.budget.take():
            raise StopUser()
        try:
            if self.options.scenario == "video":
                self.video_job()
            else:
                self.image(pick_persons(self.options.scenario, self.rng))
        finally:
            if self.budget.finish():  # the last task: its statistics are in, end the run
                gevent.spawn(self.environment.runner.quit)

    def image(self, persons: int) -> None:
        with self.client.post(
            "/densepose",
            files=image_files(persons, IMAGES),
            name=image_name(persons),
            catch_response=True,
        ) as response:
            if response.status_code == 503:
                response.request_meta["name"] += REJECTED_SUFFIX
            elif response.status_code == 200 and "persons" not in response.json():
                response.failure("no 'persons' in the answer")

    def video_job(self) -> None:
        def send(method: str, path: str, *, name: str, **kwargs: Any) -> Any:
            return self.client.request(method, path, name=name, **kwargs)

        options = self.options
        job = run_video_job(
            send, self.clip, poll_s=options.video_poll_s, timeout_s=options.video_timeout_s
        )
        self.environment.events.request.fire(
            request_type="JOB",
            name=VIDEO_NAMES["job"],
            response_time=1000 * job.seconds,
            response_length=job.result_bytes,
            exception=None if job.state == "done" else RuntimeError(f"job {job.state}"),
            context={},
        )
