"""Locust run headless in a subprocess, and its statistics read back.

Locust is started as ``python -m locust`` from the repository root (so the locustfile's
``load_tests`` imports resolve) and never imported here: it patches the standard library
with gevent when imported. The statistics are the locustfile's ``--stats-csv`` files (Locust's
own ``*_stats.csv`` rows, written once every user has stopped), not Locust's ``--csv``, which
is rewritten once a second and misses the requests of the run's last second
(locustio/locust#1806).
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
PERCENTILES = ("50%", "90%", "95%", "99%")
AGGREGATED = "Aggregated"
STOP_TIMEOUT_S = 10
"""Seconds Locust gives running tasks to finish once the run is over."""
START_TIMEOUT_S = 60
"""Seconds beyond the run (and its stop) that Locust may take to start and write its files."""


@dataclass(frozen=True)
class Row:
    """One line of Locust's ``*_stats.csv`` (times in milliseconds).

    Attributes:
        type: HTTP method (``POST``, ``GET``), ``JOB`` for a whole video job, ``""`` for
            the aggregated line.
        name: the request name (``/densepose [3 persons]``, ...) or ``Aggregated``.
        requests, failures: counts.
        rps, failures_per_s: over the run.
        average_ms, max_ms: response times.
        percentiles_ms: ``50%``, ``90%``, ``95%``, ``99%`` (NaN without data).
    """

    type: str
    name: str
    requests: int
    failures: int
    rps: float
    failures_per_s: float
    average_ms: float
    max_ms: float
    percentiles_ms: dict[str, float]

    @property
    def ok_rps(self) -> float:
        """Throughput of the successful requests."""
        return self.rps - self.failures_per_s


@dataclass(frozen=True)
class VideoLoad:
    """The locustfile's options of a ``video`` run.

    Attributes:
        clip: the MP4 each job uploads (None: the committed ``images/clip.mp4``).
        image_users: how many of the run's users send images instead, in closed loops, for
            as long as the video jobs run (not counted in ``tasks``).
        image_scenario: what they send (``persons-N`` or ``mixed``).
        poll_s: interval of a job's status polls.
        timeout_s: how long a client polls a job before it gives it up.
    """

    clip: Path | None = None
    image_users: int = 0
    image_scenario: str = "persons-3"
    poll_s: float = 0.5
    timeout_s: float = 600.0

    def options(self) -> list[str]:
        clip = [] if self.clip is None else ["--video-clip", str(self.clip)]
        return [
            *clip,
            "--image-users",
            str(self.image_users),
            "--image-scenario",
            self.image_scenario,
            "--video-poll-s",
            f"{self.poll_s:g}",
            "--video-timeout-s",
            f"{self.timeout_s:g}",
        ]


def _number(text: str) -> float:
    return math.nan if text in ("", "N/A") else float(text)


def read_stats(csv_prefix: Path) -> dict[str, Row]:
    """``<prefix>_stats.csv`` by request name (the aggregated line under ``Aggregated``)."""
    path = Path(f"{csv_prefix}_stats.csv")
    rows = {}
    with path.open(newline="") as handle:
        for line in csv.DictReader(handle):
            rows[line["Name"]] = Row(
                type=line["Type"],
                name=line["Name"],
                requests=int(line["Request Count"]),
                failures=int(line["Failure Count"]),
                rps=_number(line["Requests/s"]),
                failures_per_s=_number(line["Failures/s"]),
                average_ms=_number(line["Average Response Time"]),
                max_ms=_number(line["Max Response Time"]),
                percentiles_ms={p: _number(line[p]) for p in PERCENTILES},
            )
    return rows


def locust_command(
    host: str,
    scenario: str,
    *,
    users: int,
    seconds: float,
    csv_prefix: Path,
    tasks: int | None = None,
    video: VideoLoad | None = None,
) -> list[str]:
    """The headless Locust command line of one run (closed-loop users, all started at once):
    ``seconds`` long, or, with ``tasks``, until that many tasks (requests, video jobs) of all
    users together are done, ``seconds`` then being only a safety net (the locustfile's
    ``--tasks``). ``video``: what a ``video`` run uploads, and its image senders."""
    bound = [] if tasks is None else ["--tasks", str(tasks)]
    if video is not None:
        if scenario != "video":
            raise ValueError(f"video options are for the 'video' scenario, not {scenario!r}")
        bound += video.options()
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--host",
        host,
        "--scenario",
        scenario,
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{math.ceil(seconds)}s",
        "--stats-csv",
        str(csv_prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        str(STOP_TIMEOUT_S),
        *bound,
    ]


def run_locust(
    host: str,
    scenario: str,
    *,
    users: int,
    seconds: float,
    csv_prefix: Path,
    tasks: int | None = None,
    video: VideoLoad | None = None,
) -> dict[str, Row]:
    """Run Locust headless (:func:`locust_command`); its statistics. Locust exits 1 when some
    requests failed, which is a result here, not an error; a run that wrote no statistics is."""
    csv_prefix.parent.mkdir(parents=True, exist_ok=True)
    command = locust_command(
        host, scenario, users=users, seconds=seconds, csv_prefix=csv_prefix, tasks=tasks,
        video=video,
    )  # fmt: skip
    done = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + STOP_TIMEOUT_S + START_TIMEOUT_S,
    )
    if not Path(f"{csv_prefix}_stats.csv").is_file():
        raise RuntimeError(f"locust wrote no statistics (exit {done.returncode}):\n{done.stderr}")
    return read_stats(csv_prefix)
