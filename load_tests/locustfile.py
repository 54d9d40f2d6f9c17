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
safety net). Statistics are split by request name: ``/densepose [N persons]``; refusals
(503, queue full) are failures named ``... [rejected 503]``; a whole video job is one ``JOB``
entry (``video job [submit to result]``) besides its HTTP requests.
"""

from __future__ import annotations

import csv
import itertools
import random
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
CLIP = (IMAGES_DIR / CLIP_NAME).read_bytes()
_USER_SEEDS = itertools.count()


def _arguments(parser: Any) -> None:
    parser.add_argument("--scenario", choices=SCENARIOS, default="mixed", help="what to send")
    parser.add_argument("--video-poll-s", type=float, default=0.5, help="status poll interval")
    parser.add_argument("--video-timeout-s", type=float, default=600.0, help="give up a job")
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
    DensePoseUser.budget = TaskBudget(environment.parsed_options.tasks)


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

    def on_start(self) -> None:
        self.rng = random.Random(next(_USER_SEEDS))

    @property
    def options(self) -> Any:
        environment: Environment = self.environment
        return environment.parsed_options

    @task
    def request(self) -> None:
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

        job = run_video_job(
            send, CLIP, poll_s=self.options.video_poll_s, timeout_s=self.options.video_timeout_s
        )
        self.environment.events.request.fire(
            request_type="JOB",
            name=VIDEO_NAMES["job"],
            response_time=1000 * job.seconds,
            response_length=job.result_bytes,
            exception=None if job.state == "done" else RuntimeError(f"job {job.state}"),
            context={},
        )
