"""``load_tests/``: the committed inputs, the scenarios' requests against the app
(``TestClient``, tiny random network), Locust itself headless for a fixed number of requests
and video jobs against a real uvicorn server, the sweep's perf_analyzer-style report from
canned Locust CSV and two ``/metrics`` snapshots, the overload test's schedule and verdicts on
made-up outcomes, the scale-out nginx config (checked by ``nginx -t`` where nginx is
installed), and the video jobs benchmark: its job counts on made-up records, and the whole run
at its smallest size (a real ``redis-server``, API and worker processes, the tiny network)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import json
import random
import shutil
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client import generate_latest

from benchmarks.common import environment
from load_tests import heavy_uploads, overload, scale_out, sweep, video_jobs
from load_tests.make_images import CLIP_FRAMES, IMAGE_SIZE, MAX_BYTES
from load_tests.metrics import parse, server_split
from load_tests.raw_http import KeepAliveClient, encode_post
from load_tests.runner import VideoLoad, locust_command, read_stats, run_locust
from load_tests.scenarios import (
    CLIP_NAME,
    IMAGES_DIR,
    PERSON_COUNTS,
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
from model.video import VideoInfo, VideoOptions
from service.app import create_app
from service.jobs.records import JobRecord, JobState, new_job
from service.metrics import ServiceMetrics
from service.settings import Settings
from service.testing import ServerProcess, tiny_checkpoint

# -- inputs and scenarios -------------------------------------------------------------------


def test_committed_inputs_are_small_and_have_the_right_size() -> None:
    images = load_images()
    assert sorted(images) == list(PERSON_COUNTS)
    height, width = IMAGE_SIZE
    for data in images.values():
        assert len(data) <= MAX_BYTES
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.size) == ("JPEG", (width, height))
    assert (IMAGES_DIR / CLIP_NAME).stat().st_size <= MAX_BYTES


def test_scenarios_pick_their_person_counts() -> None:
    rng = random.Random(0)
    for n in PERSON_COUNTS:
        assert pick_persons(f"persons-{n}", rng) == n
    assert {pick_persons("mixed", rng) for _ in range(200)} == set(PERSON_COUNTS)
    for bad in ("video", "persons-2", "crowd"):
        with pytest.raises(ValueError, match="not an image scenario"):
            pick_persons(bad, rng)
    names = {image_name(n) for n in PERSON_COUNTS}
    assert len(names) == len(PERSON_COUNTS) and "/densepose [15 persons]" in names
    assert set(SCENARIOS) == {*(f"persons-{n}" for n in PERSON_COUNTS), "mixed", "video"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors")


@pytest.fixture(scope="module")
def client(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    jobs = tmp_path_factory.mktemp("jobs")
    app = create_app(Settings(weights=weights, max_wait_ms=0, video_jobs_root=jobs))
    with TestClient(app) as test_client:
        deadline = time.monotonic() + 60
        while test_client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield test_client


class Recorder:
    """A ``Send`` over the TestClient that records (method, path, name) of each request."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, method: str, path: str, *, name: str, **kwargs: Any) -> Any:
        self.calls.append((method, path, name))
        return self.client.request(method, path, **kwargs)


def test_image_requests_are_answered(client: TestClient) -> None:
    images = load_images()
    for n in PERSON_COUNTS:
        response = client.post("/densepose", files=image_files(n, images))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["image"] == dict(zip(("height", "width"), IMAGE_SIZE, strict=True))
        assert len(answer["persons"]) == 3  # the tiny test network always finds 3


def test_video_job_flow_submits_polls_and_downloads(client: TestClient) -> None:
    send = Recorder(client)
    clip = (IMAGES_DIR / CLIP_NAME).read_bytes()
    job = run_video_job(send, clip, poll_s=0.05, timeout_s=120)
    assert job.state == "done", job
    assert job.result_bytes > 0 and job.polls >= 1 and job.seconds > 0
    assert send.calls[0] == ("POST", "/densepose/video", VIDEO_NAMES["submit"])
    polls = send.calls[1:-1]
    assert polls and all(
        call == ("GET", f"/densepose/video/{job.job_id}", VIDEO_NAMES["poll"]) for call in polls
    )
    assert send.calls[-1] == (
        "GET",
        f"/densepose/video/{job.job_id}/result.npz",
        VIDEO_NAMES["result"],
    )
    refused = run_video_job(Recorder(client), b"not a video", poll_s=0.05, timeout_s=5)
    assert refused.state.startswith("rejected 4") and refused.job_id is None


# -- Locust itself --------------------------------------------------------------------------


LOCUST_LIMIT_S = 600
"""Only a safety net: the Locust runs below end after a count of tasks, however slow."""


@pytest.mark.slow
@pytest.mark.skipif(find_spec("locust") is None, reason="needs the 'load' extra (locust)")
def test_locust_runs_headless_and_splits_statistics_by_person_count(
    weights: Path, tmp_path: Path
) -> None:
    with ServerProcess({"weights": str(weights)}, log_path=tmp_path / "server.log") as server:
        rows = run_locust(
            server.url, "mixed", users=2, tasks=8, seconds=LOCUST_LIMIT_S,
            csv_prefix=tmp_path / "mixed",
        )  # fmt: skip
        video = run_locust(
            server.url, "video", users=1, tasks=1, seconds=LOCUST_LIMIT_S,
            csv_prefix=tmp_path / "video",
        )  # fmt: skip
    image_rows = {name: row for name, row in rows.items() if name.startswith("/densepose [")}
    assert image_rows and set(image_rows) <= {image_name(n) for n in PERSON_COUNTS}
    assert all(row.type == "POST" and row.failures == 0 for row in image_rows.values())
    assert sum(row.requests for row in image_rows.values()) == 8
    assert rows["Aggregated"].requests == 8
    assert video[VIDEO_NAMES["submit"]].requests == 1
    assert video[VIDEO_NAMES["poll"]].requests >= 1 and video[VIDEO_NAMES["result"]].requests == 1
    job = video[VIDEO_NAMES["job"]]
    assert job.type == "JOB" and job.requests == 1 and job.failures == 0


def test_a_task_budget_starts_its_count_and_ends_on_the_last_finish() -> None:
    budget = TaskBudget(3)
    assert [budget.take() for _ in range(5)] == [True, True, True, False, False]
    assert [budget.finish() for _ in range(3)] == [False, False, True]
    unbounded = TaskBudget(None)
    assert all(unbounded.take() for _ in range(100)) and not unbounded.finish()
    with pytest.raises(ValueError, match="at least 1 task"):
        TaskBudget(0)


def test_locust_command_bounds_a_run_by_count_or_by_time() -> None:
    timed = locust_command("http://h", "mixed", users=2, seconds=30, csv_prefix=Path("x"))
    assert timed[timed.index("--run-time") + 1] == "30s" and "--tasks" not in timed
    counted = locust_command(
        "http://h", "mixed", users=2, seconds=600, csv_prefix=Path("x"), tasks=8
    )
    assert counted[counted.index("--tasks") + 1] == "8"


def test_locust_command_passes_a_video_load_to_the_locustfile() -> None:
    load = VideoLoad(clip=Path("c.mp4"), image_users=2, image_scenario="persons-8", poll_s=0.25)
    command = locust_command(
        "http://h", "video", users=6, seconds=600, csv_prefix=Path("x"), tasks=4, video=load
    )
    options = dict(itertools.pairwise(command))  # each flag -> the word after it
    assert options["--video-clip"] == "c.mp4" and options["--image-users"] == "2"
    assert options["--image-scenario"] == "persons-8" and options["--video-poll-s"] == "0.25"
    assert options["--tasks"] == "4" and options["--users"] == "6"
    with pytest.raises(ValueError, match="'video' scenario"):
        locust_command("http://h", "mixed", users=1, seconds=1, csv_prefix=Path("x"), video=load)


# -- the sweep's report ---------------------------------------------------------------------

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


def canned_csv(prefix: Path) -> None:
    rejected = image_name(3) + REJECTED_SUFFIX
    Path(f"{prefix}_stats.csv").write_text(
        "\n".join(
            [
                HEADER,
                f"POST,{image_name(3)},100,0,500,520.4,300,900,2000,3.5,0.0,"
                "500,510,520,530,600,650,700,800,900,900,900",
                f"POST,{rejected},10,10,5,5.0,4,9,50,0.35,0.35,5,5,5,5,6,7,8,9,9,9,9",
                ",Aggregated,110,10,480,473.7,4,900,1800,3.85,0.35,"
                "480,500,510,520,590,640,690,790,900,900,900",
            ]
        )
        + "\n"
    )


def metrics_texts() -> tuple[str, str]:
    """/metrics before and after a made-up cell: 10 requests, each 1 s on the server, 0.2 s
    queued; 3 batches of 2 (0.4 s each) and 4 batches of 1 (0.2 s each); 2 refusals."""
    metrics = ServiceMetrics()
    metrics.request_latency.labels(endpoint="/densepose", persons="3-4").observe(9.0)
    before = generate_latest(metrics.registry).decode()
    for _ in range(10):
        metrics.request_latency.labels(endpoint="/densepose", persons="3-4").observe(1.0)
        metrics.queue_wait.observe(0.2)
    for size, seconds, count in (("2", 0.4, 3), ("1", 0.2, 4)):
        for _ in range(count):
            metrics.forward_time.labels(batch_size=size).observe(seconds)
    metrics.rejections.labels(reason="queue_full").inc(2)
    return before, generate_latest(metrics.registry).decode()


def test_server_split_diffs_the_histograms() -> None:
    before, after = (parse(text) for text in metrics_texts())
    split = server_split(before, after)
    assert split.requests == 10
    assert split.latency_s == pytest.approx(1.0)
    assert split.queue_s == pytest.approx(0.2)
    # request-weighted: (2 * 1.2 + 1 * 0.8) / (2 * 3 + 1 * 4)
    assert split.compute_s == pytest.approx(0.32)
    assert split.other_s == pytest.approx(0.48)
    assert split.batches == 7 and split.mean_batch_size == pytest.approx(10 / 7)
    assert split.rejected == {"queue_full": 2.0}


def test_sweep_report_from_canned_csv_and_metrics(tmp_path: Path) -> None:
    canned_csv(tmp_path / "cell")
    rows = read_stats(tmp_path / "cell")
    before, after = (parse(text) for text in metrics_texts())
    cell = sweep.cell_report(persons=3, users=4, seconds=30, rows=rows, before=before, after=after)
    assert cell["client"]["throughput_rps"] == pytest.approx(3.5)
    assert cell["client"]["latency_ms"] == {"50%": 500, "90%": 600, "95%": 650, "99%": 800}
    assert cell["rejected_503"] == 10 and cell["all_failures"] == 10
    assert cell["server"]["queue_s"] == pytest.approx(0.2)
    report = {
        "environment": environment(module=sweep.MODULE, argv=[], threads=1)
        | {"load_average_end": [0.0, 0.0, 0.0]},
        "host": "http://127.0.0.1:8000",
        "server": {"model_id": "default@abc", "device": "cpu", "torch_threads": 2},
        "settings": {"seconds": 30},
        "cells": [cell],
    }
    text = sweep.render_markdown(report)
    assert "| 3 | 4 | 3.50 | 500 | 600 | 650 | 800 | 520 | 1000 | 200 | 320 | 480 |" in text
    assert (
        "throughput 3.50 infer/sec, latency p50 500000 usec, p90 600000 usec, p95 650000 "
        "usec, p99 800000 usec; avg server request 1000000 usec (queue 200000 + compute "
        "320000 + other 480000)"
    ) in text
    sweep.plot(report, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0


# -- overload -------------------------------------------------------------------------------

PHASES = [
    overload.Phase("before", 2.0, 10.0),
    overload.Phase("overload", 8.0, 10.0),
    overload.Phase("after", 2.0, 10.0),
]


def test_arrivals_follow_the_phase_rates() -> None:
    schedule = overload.arrivals(PHASES, seed=0)
    times = [t for t, _ in schedule]
    assert times == sorted(times) and times[0] >= 0 and times[-1] < 30
    counts = {p.name: sum(1 for _, name in schedule if name == p.name) for p in PHASES}
    assert 10 <= counts["before"] <= 30 and 60 <= counts["overload"] <= 100
    starts = {"before": 0, "overload": 10, "after": 20}
    assert all(starts[name] <= t < starts[name] + 10 for t, name in schedule)


def outcome(sent_s: float, phase: str, status: int, latency_s: float) -> overload.Outcome:
    return overload.Outcome(sent_s, phase, status, latency_s)


def test_overload_phase_report_and_recovery() -> None:
    outcomes = [outcome(t / 2, "before", 200, 0.5) for t in range(20)]
    outcomes += [outcome(10 + t / 8, "overload", 503 if t % 2 else 200, 2.0) for t in range(80)]
    outcomes += [outcome(20 + t / 2, "after", 200, 3.0 if t < 6 else 0.5) for t in range(20)]
    report = overload.phase_report(outcomes, PHASES[1])
    assert report["sent"] == 80 and report["offered_rps"] == 8.0
    assert report["rejected_503_share"] == 0.5 and report["accepted_rps"] == 4.0
    assert report["accepted_p99_s"] == pytest.approx(2.0)
    queue = [(t / 2, 1.0 if t < 20 else (64.0 if t < 46 else 0.0)) for t in range(60)]
    rec = overload.recovery(outcomes, queue, PHASES)
    assert rec["queue_drained_s"] == pytest.approx(3.0)
    assert rec["latency_recovered_s"] == pytest.approx(3.0)  # bins 0-2 are 3 s slow
    never = [*outcomes[:-1], outcome(29.9, "after", 503, 0.01)]
    assert overload.recovery(never, queue, PHASES)["latency_recovered_s"] is None


def test_the_storm_client_reuses_its_connection_and_reads_every_kind_of_body() -> None:
    """Canned answers from a loopback server: Content-Length, chunked (with a trailer), then
    ``Connection: close``, after which the client opens a new connection."""
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ]
    request = encode_post("http://127.0.0.1:1", "/densepose", b"\xff\xd8body", "image/jpeg")
    received: list[bytes] = []
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(received))
        while len(received) < len(answers) and (data := await reader.readexactly(len(request))):
            received.append(data)
            writer.write(answers[len(received) - 1])
            await writer.drain()
            if b"Connection: close" in answers[len(received) - 1]:
                break
        writer.close()

    async def run() -> list[int]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = KeepAliveClient(f"http://127.0.0.1:{port}", request, timeout_s=10)
        try:
            return [await client.send() for _ in answers]
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(run()) == [200, 503, 413, 200]
    assert received == [request] * 4 and connections == [0, 3]  # one reconnect, after the close
    assert request.startswith(b"POST /densepose HTTP/1.1\r\nHost: 127.0.0.1:1\r\n")
    assert request.endswith(b"Content-Length: 6\r\nConnection: keep-alive\r\n\r\n\xff\xd8body")
    with pytest.raises(ValueError, match="http://"):
        KeepAliveClient("https://example.com", request, timeout_s=1)


@pytest.mark.slow
def test_the_storm_client_is_answered_by_the_service(weights: Path, tmp_path: Path) -> None:
    upload = overload.Upload(load_images((1,))[1])
    with ServerProcess({"weights": str(weights)}, log_path=tmp_path / "server.log") as server:

        async def run() -> list[int]:
            good = upload.client(server.url)
            bad = overload.Upload(b"not an image").client(server.url)
            try:
                return [await good.send(), await bad.send(), await good.send()]
            finally:
                await good.close()
                await bad.close()

        assert asyncio.run(run()) == [200, 415, 200]


# -- a heavy neighbour -----------------------------------------------------------------------


def test_the_heavy_photo_is_the_image_upscaled() -> None:
    small = load_images((3,))[3]
    heavy = Image.open(io.BytesIO(heavy_uploads.upscaled_jpeg(small, 300, 500)))
    assert heavy.format == "JPEG" and heavy.size == (500, 300)


def test_the_heavy_neighbour_report_checks_the_small_p99_against_one_heavy_request() -> None:
    def outcomes(kind: str, latencies: list[float], status: int = 200) -> list[dict[str, Any]]:
        return [{"kind": kind, "sent_s": float(i), "status": status, "latency_s": latency}
                for i, latency in enumerate(latencies)]  # fmt: skip

    def phase(*groups: list[dict[str, Any]]) -> dict[str, Any]:
        return {"seconds": 10.0, "outcomes": [o for g in groups for o in g], "rss_bytes": [1e9]}

    phases = {
        "heavy alone": phase(outcomes("heavy", [1.0, 1.2, 1.4])),
        "small alone": phase(outcomes("small", [0.2] * 100)),
        "small + heavy": phase(
            outcomes("small", [0.25] * 90 + [1.6] * 10), outcomes("heavy", [1.5])
        ),
    }
    summary = heavy_uploads.summarize(phases)
    assert summary["small_p99_bound_s"] == pytest.approx(0.2 + 1.2)  # p99 alone + heavy p50
    assert not summary["small_p99_within_bound"]  # 1.6 > 1.4
    assert summary["non_2xx"] == 0
    phases["small + heavy"] = phase(
        outcomes("small", [0.25] * 100), outcomes("heavy", [1.5]), outcomes("heavy", [0.0], 503)
    )
    summary = heavy_uploads.summarize(phases)
    assert summary["small_p99_within_bound"] and summary["non_2xx"] == 1
    assert summary["phases"]["small + heavy"]["heavy"]["statuses"] == {"200": 1, "503": 1}


def test_the_heavy_neighbour_runs_against_the_service(weights: Path, tmp_path: Path) -> None:
    """The whole command at its smallest: a second a phase, a 600 x 800 heavy photo."""
    with ServerProcess({"weights": str(weights)}, log_path=tmp_path / "server.log") as server:
        report = heavy_uploads.main(
            ["--host", server.url, "--out", str(tmp_path), "--seconds", "1",
             "--heavy-size", "600x800", "--clients", "1"]
        )  # fmt: skip
    summary = report["summary"]
    assert summary["non_2xx"] == 0
    assert summary["phases"]["heavy alone"]["small"] is None
    assert summary["phases"]["small + heavy"]["heavy"]["requests"] >= 1
    assert summary["phases"]["small alone"]["peak_rss_bytes"] > 0
    assert (tmp_path / "heavy_uploads.md").read_text().startswith("# A heavy neighbour")
    assert (tmp_path / "heavy_uploads.png").stat().st_size > 0


# -- scale-out ------------------------------------------------------------------------------


def test_nginx_config_has_both_backends_least_conn_and_stays_in_its_prefix(
    tmp_path: Path,
) -> None:
    backends = ["127.0.0.1:8001", "127.0.0.1:8002"]
    text = scale_out.nginx_config(tmp_path, listen_port=8080, backends=backends)
    upstream = text[text.index("upstream ddp {") : text.index("}", text.index("upstream ddp {"))]
    assert "least_conn;" in upstream
    assert all(f"server {backend}" in upstream for backend in backends)
    assert "listen 127.0.0.1:8080;" in text and "daemon off;" in text
    paths = [
        w.rstrip(";") for w in text.split() if w.startswith("/") and w != "/"
    ]  # not "location /"
    assert paths and all(path.startswith(str(tmp_path)) for path in paths)
    if shutil.which("nginx") is None:
        pytest.skip("nginx not installed: config rendered, not checked by nginx -t")
    config = scale_out.write_nginx(tmp_path, listen_port=8080, backends=backends)
    assert config.read_text() == text


# -- video jobs -----------------------------------------------------------------------------


def made_up_job(
    index: int, *, state: JobState, created: float, started: float | None,
    finished: float | None, frames: int = 20, attempts: int = 1,
) -> JobRecord:  # fmt: skip
    video = VideoInfo(frames=frames, fps=10.0, width=160, height=120)
    record = new_job(f"{index:032x}", "video.mp4", video, VideoOptions(), now=created)
    return dataclasses.replace(
        record, state=state, started_at=started, finished_at=finished, attempts=attempts,
        frames_done=frames if state == "done" else 0,
    )  # fmt: skip


def test_job_summary_counts_lost_jobs_and_frames_per_second() -> None:
    records = [
        made_up_job(0, state="done", created=100.0, started=100.0, finished=104.0),
        made_up_job(1, state="done", created=100.5, started=104.0, finished=110.0, attempts=2),
        made_up_job(2, state="running", created=101.0, started=110.0, finished=None),
    ]
    summary = video_jobs.job_summary(records, submitted=5, accepted=4, client_failures=2)
    assert (summary["submitted"], summary["accepted"], summary["records"]) == (5, 4, 3)
    assert (summary["done"], summary["failed"], summary["cancelled"]) == (2, 0, 0)
    assert summary["lost"] == 2  # one still running, one accepted without a record
    assert summary["attempts"] == 4 and summary["frames"] == 40
    assert summary["seconds"] == pytest.approx(10.0)  # first acceptance to last finish
    assert summary["frames_per_s"] == pytest.approx(4.0)
    latency = summary["latency_s"]
    assert latency["p50"] == pytest.approx(6.75) and latency["max"] == pytest.approx(9.5)
    assert latency["queued_mean"] == pytest.approx(1.75)
    assert latency["running_mean"] == pytest.approx(5.0)
    assert summary["clip"] == {"frames": 20, "fps": 10.0, "width": 160, "height": 120}
    nothing = video_jobs.job_summary([], submitted=1, accepted=0, client_failures=1)
    assert nothing["lost"] == 0 and nothing["frames_per_s"] == 0.0 and nothing["clip"] is None


def test_video_jobs_phases_start_workers_in_order_and_check_their_flags() -> None:
    args = video_jobs.parse_args(["--out", "x", "--workers", "1", "2", "3"])
    phases = video_jobs.separate_phases(args)
    assert [(workers, phase.name) for workers, phase in phases] == [
        (0, "images alone"),
        (1, "video, 1 worker"),
        (1, "images + video, separate worker"),
        (2, "video, 2 workers"),
        (3, "video, 3 workers"),
    ]
    assert phases[0][1].jobs == 0 and all(phase.jobs == 4 for _, phase in phases[1:])
    assert [phase.image_users for _, phase in phases] == [2, 0, 2, 0, 0]
    quiet = video_jobs.parse_args(["--out", "x", "--baseline-s", "0", "--image-users", "0"])
    assert [phase.name for _, phase in video_jobs.separate_phases(quiet)] == [
        "video, 1 worker",
        "video, 2 workers",
    ]
    for bad in (["--workers", "2", "1"], ["--jobs", "0"], ["--clip", "clip.avi"]):
        with pytest.raises(SystemExit):
            video_jobs.parse_args(["--out", "x", *bad])


@pytest.mark.slow
@pytest.mark.timeout(2400)  # four processes load a model each: minutes on a busy 2-core machine
@pytest.mark.skipif(find_spec("locust") is None, reason="needs the 'load' extra (locust)")
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_video_jobs_benchmark_runs_every_phase_and_loses_no_job(
    weights: Path, tmp_path: Path
) -> None:
    jobs = 2
    report = video_jobs.main([
        "--out", str(tmp_path / "out"), "--weights", str(weights),
        "--clip", str(IMAGES_DIR / CLIP_NAME), "--jobs", str(jobs), "--image-users", "1",
        "--baseline-s", "2", "--poll-s", "0.1", "--job-timeout-s", "900",
    ])  # fmt: skip
    phases = {phase["name"]: phase for phase in report["phases"]}
    assert list(phases) == [
        "images alone",
        "video, 1 worker",
        "images + video, separate worker",
        "video, 2 workers",
        "images + video, in-process worker",
    ]
    for phase in report["phases"][1:]:
        counts = phase["jobs"]
        assert (counts["submitted"], counts["accepted"], counts["records"]) == (jobs,) * 3
        assert counts["done"] == jobs and counts["lost"] == 0 and counts["client_failures"] == 0
        assert counts["frames"] == jobs * CLIP_FRAMES and counts["frames_per_s"] > 0
    for name in ("images alone", "images + video, separate worker",
                 "images + video, in-process worker"):  # fmt: skip
        images = phases[name]["images"]
        assert images["requests"] >= 1 and images["failures"] == 0, name
    assert phases["video, 1 worker"]["images"] is None
    assert report["jobs_lost"] == 0 and report["speedup"] is not None
    assert report["clip"]["frames"] == CLIP_FRAMES
    out = tmp_path / "out"
    assert json.loads((out / "video_jobs.json").read_text())["jobs_lost"] == 0
    text = (out / "video_jobs.md").read_text()
    assert "| video, 2 workers | 2 | API 1 + worker 1 + worker 1 |" in text
    assert "| images + video, in-process worker | API process | API 1 |" in text
    assert (out / "video_jobs.png").stat().st_size > 0
