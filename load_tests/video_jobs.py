"""Concurrent video jobs on the job queue (docs/jobs.md): frames per second with one and two
``ddp worker`` processes, and the image endpoint's latency while video jobs run, with the jobs
run by a separate worker process vs by the API process itself.

``python -m load_tests.video_jobs --out docs/benchmarks [--untrained default] [--jobs 4]``

Starts everything itself, on loopback, and stops it at the end: a ``redis-server`` (Debian
package) per set-up, API processes (``ddp serve``'s uvicorn app: ``service.testing.
ServerProcess``) and ``ddp worker`` processes, every one with ``DDP_TORCH_THREADS`` =
``--torch-threads``. The clip is rendered first (``--clip-seconds`` at ``--clip-fps``,
``--clip-size``, people walking: ``model.data.synth``), unless ``--clip`` names an MP4. Every
phase is one headless Locust run (``load_tests.runner``): ``--jobs`` users each upload the clip
once (the ``video`` scenario, ``--tasks``), poll it to the end and download its NPZ, while
``--image-users`` more send ``POST /densepose`` in closed loops where the phase has images.

Separate workers (Redis; the API with ``DDP_VIDEO_WORKER=false``):

1. ``images alone``: no worker yet; the image users for ``--baseline-s``.
2. ``video, W workers`` for each W of ``--workers`` (1 2): workers are started up to W, then
   the jobs.
3. ``images + video, separate worker``: right after the first of those, the jobs again with
   the image users beside them.

In-process worker (a fresh Redis; one API with ``DDP_VIDEO_WORKER=true``: its jobs' model calls
share the model thread of ``/densepose``):

4. ``images + video, in-process worker``: as 3.

Per video phase the job records (the store every process shares) of the jobs accepted during
the phase give the counts (submitted, accepted, done, lost: accepted but not finished when the
phase ended), the frames per second (frames of the done jobs / from the first acceptance to
the last finish) and each job's latency (acceptance to finish, split into queued and running).
Writes ``video_jobs.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    describe,
    environment,
    image_size,
    markdown_table,
    save_figure,
    write_outputs,
)
from load_tests.make_images import render_clip
from load_tests.runner import Row, VideoLoad, run_locust
from load_tests.scenarios import FINISHED, PERSON_COUNTS, REJECTED_SUFFIX, VIDEO_NAMES, image_name
from service.jobs.records import JobRecord
from service.testing import ServerProcess, WorkerProcess, redis_server

MODULE = "load_tests.video_jobs"
STEM = "video_jobs"
IMAGE_SCENARIOS = tuple(f"persons-{n}" for n in PERSON_COUNTS)
LSCPU_FIELDS = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Socket(s)")
READY_TIMEOUT_S = 600.0
"""A process loading a model on a busy 2-core machine can take minutes."""


# -- what runs --------------------------------------------------------------------------------


def service_settings(args: argparse.Namespace, *, queue_url: str, jobs_root: Path,
                     in_process: bool) -> dict[str, str]:  # fmt: skip
    """The ``DDP_*`` settings of every API and worker process of one set-up."""
    settings = {
        "device": "cpu",
        "torch_threads": str(args.torch_threads),
        "video_queue_url": queue_url,
        "video_jobs_root": str(jobs_root),
        "video_worker": str(in_process).lower(),
        "video_max_queued": str(max(8, args.jobs)),  # all jobs of a phase are accepted
        "drain_timeout_s": "10",
    }
    if args.weights is not None:
        settings["weights"] = str(args.weights)
    if args.untrained is not None:
        settings["untrained_config"] = args.untrained
    return settings


def job_records(queue_url: str) -> list[JobRecord]:
    from service.jobs.redis_store import RedisJobStore

    store = RedisJobStore(queue_url)
    try:
        return store.records()
    finally:
        store.close()


# -- one phase --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One Locust run of a set-up: ``jobs`` video jobs (0: none) and ``image_users`` image
    senders (for as long as the jobs run, or ``seconds`` without jobs)."""

    name: str
    jobs: int
    image_users: int
    workers: int
    """Worker processes running; 0 with the in-process worker."""
    video_in: str | None
    """Who runs the jobs: ``worker process``, ``API process``; None: no video."""
    seconds: float = 0.0


def job_summary(records: Sequence[JobRecord], *, submitted: int, accepted: int,
                client_failures: int) -> dict[str, Any]:  # fmt: skip
    """Counts, throughput and latency of one phase's jobs (``records``: those created in it).

    ``lost``: accepted (202) but not finished (done, failed, cancelled) when the phase ended,
    or with no record at all. Frames per second: the done jobs' frames over the span from the
    first acceptance to the last finish (wall clock, as the records keep it).
    """
    by_state = {state: sum(r.state == state for r in records) for state in FINISHED}
    finished = sum(by_state.values())
    done = [r for r in records if r.state == "done" and r.finished_at is not None]
    frames = sum(r.frames_done for r in done)
    span = max((r.finished_at or 0.0 for r in done), default=0.0) - min(
        (r.created_at for r in done), default=0.0
    )
    latency = [(r.finished_at or 0.0) - r.created_at for r in done]
    queued = [(r.started_at or 0.0) - r.created_at for r in done]
    running = [(r.finished_at or 0.0) - (r.started_at or 0.0) for r in done]

    def mean(values: list[float]) -> float | None:
        return statistics.fmean(values) if values else None

    return {
        "submitted": submitted,
        "accepted": accepted,
        "records": len(records),
        **by_state,
        "lost": max(accepted, len(records)) - finished,
        "client_failures": client_failures,
        "attempts": sum(r.attempts for r in records),
        "frames": frames,
        "seconds": span if done else None,
        "frames_per_s": frames / span if done and span > 0 else 0.0,
        "latency_s": {
            "p50": statistics.median(latency) if latency else None,
            "max": max(latency, default=None),
            "queued_mean": mean(queued),
            "running_mean": mean(running),
        },
        "clip": None if not records else {
            "frames": records[0].video.frames,
            "fps": records[0].video.fps,
            "width": records[0].video.width,
            "height": records[0].video.height,
        },
    }  # fmt: skip


def image_summary(rows: dict[str, Row], persons: int) -> dict[str, Any]:
    accepted = rows.get(image_name(persons))
    rejected = rows.get(image_name(persons) + REJECTED_SUFFIX)
    nan = float("nan")
    return {
        "requests": 0 if accepted is None else accepted.requests,
        "failures": 0 if accepted is None else accepted.failures,
        "rejected_503": 0 if rejected is None else rejected.requests,
        "throughput_rps": nan if accepted is None else accepted.ok_rps,
        "latency_ms": {} if accepted is None else accepted.percentiles_ms,
        "max_ms": nan if accepted is None else accepted.max_ms,
    }


def run_phase(phase: Phase, *, url: str, queue_url: str, clip: Path, persons: int,
              args: argparse.Namespace, csv_dir: Path) -> dict[str, Any]:  # fmt: skip
    """One Locust run against ``url``; its image and job summaries."""
    print(f"[{MODULE}] {phase.name}", file=sys.stderr, flush=True)
    csv_prefix = csv_dir / phase.name.replace(" ", "_").replace(",", "")
    started = time.time()
    if phase.jobs:
        video = VideoLoad(
            clip=clip,
            image_users=phase.image_users,
            image_scenario=f"persons-{persons}",
            poll_s=args.poll_s,
            timeout_s=args.job_timeout_s,
        )
        rows = run_locust(url, "video", users=phase.jobs + phase.image_users,
                          seconds=args.job_timeout_s + 60, csv_prefix=csv_prefix,
                          tasks=phase.jobs, video=video)  # fmt: skip
    else:
        rows = run_locust(url, f"persons-{persons}", users=phase.image_users,
                          seconds=phase.seconds, csv_prefix=csv_prefix)  # fmt: skip
    ended = time.time()
    result: dict[str, Any] = {
        "name": phase.name,
        "workers": phase.workers,
        "video_in": phase.video_in,
        "image_users": phase.image_users,
        "images": image_summary(rows, persons) if phase.image_users else None,
        "jobs": None,
    }
    if phase.jobs:
        submit, job = rows.get(VIDEO_NAMES["submit"]), rows.get(VIDEO_NAMES["job"])
        records = [r for r in job_records(queue_url) if started <= r.created_at <= ended]
        result["jobs"] = job_summary(
            records,
            submitted=0 if submit is None else submit.requests,
            accepted=0 if submit is None else submit.requests - submit.failures,
            client_failures=phase.jobs if job is None else job.failures,
        )
    return result


# -- the whole run ----------------------------------------------------------------------------


def separate_phases(args: argparse.Namespace) -> list[tuple[int, Phase]]:
    """(workers to have running, phase) of the separate-worker set-up, in order."""
    phases = []
    if args.baseline_s > 0:
        phases.append((0, Phase("images alone", 0, args.image_users, 0, None, args.baseline_s)))
    for index, workers in enumerate(args.workers):
        plural = "s" if workers > 1 else ""
        phases.append(
            (workers, Phase(f"video, {workers} worker{plural}", args.jobs, 0, workers,
                            "worker process"))
        )  # fmt: skip
        if index == 0 and args.image_users:
            phases.append(
                (workers, Phase("images + video, separate worker", args.jobs, args.image_users,
                                workers, "worker process"))
            )  # fmt: skip
    return phases


def lscpu() -> dict[str, str]:
    """The fields of ``lscpu`` that say what the CPU is ({} without lscpu)."""
    binary = shutil.which("lscpu")
    if binary is None:
        return {}
    text = subprocess.run([binary], capture_output=True, text=True, check=False).stdout
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() in LSCPU_FIELDS:
            fields.setdefault(key.strip(), " ".join(value.split()))
    return fields


def redis_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server not installed (Debian: apt-get install redis-server)")
    text = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return next((w[2:] for w in text.split() if w.startswith("v=")), text.strip())


def api(settings: dict[str, str], log: Path) -> ServerProcess:
    return ServerProcess(settings, log_path=log, ready_timeout_s=READY_TIMEOUT_S)


def run_all(args: argparse.Namespace, work: Path, clip: Path) -> tuple[list[dict[str, Any]], str]:
    """Every phase, in order; and the served network's id."""
    persons = int(args.image_scenario.removeprefix("persons-"))
    csv_dir = work / "csv"
    results = []
    with contextlib.ExitStack() as stack:  # separate workers
        queue_url = stack.enter_context(redis_server(work / "redis-separate"))
        settings = service_settings(args, queue_url=queue_url, jobs_root=work / "jobs-separate",
                                    in_process=False)  # fmt: skip
        server = stack.enter_context(api(settings, work / "api-separate.log"))
        model_id = str(httpx.get(f"{server.url}/v1/model", timeout=30).json()["model_id"])
        workers: list[WorkerProcess] = []
        for count, phase in separate_phases(args):
            while len(workers) < count:
                log = work / f"worker-{len(workers) + 1}.log"
                workers.append(stack.enter_context(WorkerProcess(settings, log_path=log)))
            results.append(run_phase(phase, url=server.url, queue_url=queue_url, clip=clip,
                                     persons=persons, args=args, csv_dir=csv_dir))  # fmt: skip
    if args.image_users:
        with contextlib.ExitStack() as stack:  # the API runs the jobs itself
            queue_url = stack.enter_context(redis_server(work / "redis-in-process"))
            settings = service_settings(
                args, queue_url=queue_url, jobs_root=work / "jobs-in-process", in_process=True
            )
            server = stack.enter_context(api(settings, work / "api-in-process.log"))
            phase = Phase("images + video, in-process worker", args.jobs, args.image_users, 0,
                          "API process")  # fmt: skip
            results.append(run_phase(phase, url=server.url, queue_url=queue_url, clip=clip,
                                     persons=persons, args=args, csv_dir=csv_dir))  # fmt: skip
    return results, model_id


VIDEO_HEADERS = (
    "phase", "workers", "torch threads", "jobs submitted / accepted / done / lost", "frames",
    "frames/s", "job p50 s", "job max s", "mean queued s", "mean running s", "attempts",
)  # fmt: skip
IMAGE_HEADERS = (
    "phase", "video runs in", "torch threads", "image clients", "requests (failures)", "req/s",
    "p50 ms", "p99 ms", "video frames/s", "jobs done / lost",
)  # fmt: skip


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None or value != value else format(value, spec)  # NaN != NaN


def render_markdown(report: dict[str, Any]) -> str:
    settings, threads = report["settings"], report["settings"]["torch_threads"]
    cpu = report["lscpu"]
    cpu_line = ", ".join(f"{key}: {value}" for key, value in cpu.items()) or "lscpu not found"
    clip = report["clip"]
    video_phases = [p for p in report["phases"] if p["jobs"] is not None and not p["image_users"]]
    image_phases = [p for p in report["phases"] if p["images"] is not None]

    accepted = sum(p["jobs"]["accepted"] for p in report["phases"] if p["jobs"] is not None)

    def processes(phase: dict[str, Any]) -> str:
        return f"API {threads}" + "".join(f" + worker {threads}" for _ in range(phase["workers"]))

    video_rows = []
    for phase in video_phases:
        jobs, latency = phase["jobs"], phase["jobs"]["latency_s"]
        video_rows.append([
            phase["name"], str(phase["workers"]), processes(phase),
            f"{jobs['submitted']} / {jobs['accepted']} / {jobs['done']} / {jobs['lost']}",
            str(jobs["frames"]), f"**{jobs['frames_per_s']:.2f}**",
            _fmt(latency["p50"], ".1f"), _fmt(latency["max"], ".1f"),
            _fmt(latency["queued_mean"], ".1f"), _fmt(latency["running_mean"], ".1f"),
            str(jobs["attempts"]),
        ])  # fmt: skip
    image_rows = []
    for phase in image_phases:
        images, jobs = phase["images"], phase["jobs"]
        counts = "—" if jobs is None else f"{jobs['done']} / {jobs['lost']}"
        image_rows.append([
            phase["name"], phase["video_in"] or "no video", processes(phase),
            str(phase["image_users"]), f"{images['requests']} ({images['failures']})",
            _fmt(images["throughput_rps"], ".2f"),
            _fmt(images["latency_ms"].get("50%"), ".0f"),
            f"**{_fmt(images['latency_ms'].get('99%'), '.0f')}**",
            "—" if jobs is None else f"{jobs['frames_per_s']:.2f}", counts,
        ])  # fmt: skip
    lines = [
        "# Video jobs: frames/s with 1 and 2 workers; the image endpoint under a video load\n",
        describe(report["environment"]) + "\n",
        f"CPU (`lscpu`): {cpu_line}.\n",
        f"Network `{report['model_id']}` on the CPU, `DDP_TORCH_THREADS={threads}` in every "
        f"process (API and each `ddp worker`; one job at a time per worker, "
        f"`DDP_VIDEO_MAX_RUNNING=1`). Queue: redis-server {report['redis']} on loopback, a "
        "fresh one per set-up; results on the local disk. Clip: "
        + (
            f"{clip['frames']} frames, {clip['width']}x{clip['height']} at {clip['fps']:g} fps "
            f"({clip['frames'] / clip['fps']:.1f} s), {report['clip_bytes']} bytes "
            f"({report['clip_source']})"
            if clip
            else report["clip_source"]
        )
        + f". Each video phase: {settings['jobs']} jobs submitted at once (Locust `video` "
        f"scenario, one user per job, polls every {settings['poll_s']:g} s, then downloads the "
        "NPZ); default smoothing (DIS flow).\n",
        "## Video jobs by workers\n",
        markdown_table(VIDEO_HEADERS, video_rows),
        "* frames/s: frames of the done jobs / (last finish - first acceptance); a job's "
        "time: acceptance to finish (the job records), queued + running.\n"
        "* lost: accepted (202) but not finished (done, failed, cancelled) when the phase "
        "ended, or with no record. attempts > jobs: a job ran again.\n"
        f"* **jobs lost, all phases: {report['jobs_lost']}** of {accepted} accepted."
        + (
            ""
            if report["speedup"] is None
            else f"\n* {report['speedup']['label']}: **{report['speedup']['ratio']:.2f}x** "
            "the frames/s."
        )
        + "\n",
    ]
    if image_rows:
        lines += [
            f"## `POST /densepose` ({settings['image_scenario']}) under a video load\n",
            markdown_table(IMAGE_HEADERS, image_rows),
            f"* image clients: closed loops (the next request when the answer is in), as long "
            f"as the phase's {settings['jobs']} jobs run ({settings['baseline_s']:g} s without "
            "video). Separate worker: the API's model serves only images, the worker has its "
            "own model and process. In-process worker: the API runs the jobs too "
            "(`DDP_VIDEO_WORKER=true`), its frames going through the same model thread as the "
            "images.\n",
        ]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    video = [p for p in report["phases"] if p["jobs"] is not None]
    images = [p for p in report["phases"] if p["images"] is not None]
    figure, (rate_axes, image_axes) = plt.subplots(1, 2, figsize=(11, 4))
    names = [p["name"].replace(", ", ",\n").replace(" + ", " +\n") for p in video]
    rate_axes.bar(names, [p["jobs"]["frames_per_s"] for p in video])
    rate_axes.set(ylabel="frames / s", title="video throughput")
    rate_axes.tick_params(axis="x", labelsize=7)
    if images:
        positions = range(len(images))
        for offset, key in ((-0.2, "50%"), (0.2, "99%")):
            values = [p["images"]["latency_ms"].get(key, float("nan")) for p in images]
            image_axes.bar([x + offset for x in positions], values, width=0.4, label=f"p{key[:-1]}")
        image_axes.set_xticks(list(positions))
        image_axes.set_xticklabels([p["name"].replace(", ", ",\n") for p in images], fontsize=7)
        image_axes.set(ylabel="ms", title="POST /densepose latency")
        image_axes.legend()
    save_figure(figure, path)


def speedup(phases: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """frames/s of the most workers over the fewest (video-only phases)."""
    video = [p for p in phases if p["jobs"] is not None and not p["image_users"]]
    if len(video) < 2 or video[0]["jobs"]["frames_per_s"] <= 0:
        return None
    first, last = video[0], video[-1]
    return {
        "label": f"{last['workers']} workers / {first['workers']}",
        "ratio": last["jobs"]["frames_per_s"] / first["jobs"]["frames_per_s"],
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {STEM}.*")
    parser.add_argument("--weights", type=Path, help="checkpoint (default: the service's)")
    parser.add_argument("--untrained", metavar="CONFIG", help="when the weights are missing")
    parser.add_argument("--jobs", type=int, default=4, help="video jobs per phase, all at once")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts, increasing")  # fmt: skip
    parser.add_argument("--image-users", type=int, default=2,
                        help="closed-loop image clients (0: no image phases)")  # fmt: skip
    parser.add_argument("--image-scenario", default="persons-3", choices=IMAGE_SCENARIOS)
    parser.add_argument("--baseline-s", type=float, default=20.0,
                        help="images alone, before any video (0: skip)")  # fmt: skip
    parser.add_argument("--torch-threads", type=int, default=1, help="per process")
    parser.add_argument("--clip", type=Path, help="an MP4 to upload instead of rendering one")
    parser.add_argument("--clip-seconds", type=float, default=2.5)
    parser.add_argument("--clip-fps", type=float, default=10.0)
    parser.add_argument("--clip-size", type=functools.partial(image_size, minimum=32),
                        default=(120, 160), metavar="HxW")  # fmt: skip
    parser.add_argument("--clip-persons", type=int, default=2)
    parser.add_argument("--poll-s", type=float, default=0.5, help="job status poll interval")
    parser.add_argument("--job-timeout-s", type=float, default=600.0,
                        help="a client gives a job up (it then counts as lost)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.image_users < 0 or args.torch_threads < 1:
        parser.error("need --jobs >= 1, --image-users >= 0, --torch-threads >= 1")
    if not args.workers or args.workers[0] < 1 or args.workers != sorted(set(args.workers)):
        parser.error(f"--workers: increasing counts >= 1, got {args.workers}")
    if args.clip is not None and args.clip.suffix.lower() != ".mp4":
        parser.error(f"--clip: an MP4 (it is uploaded as video/mp4), got {args.clip}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    env = environment(module=MODULE, argv=argv, threads=args.torch_threads)
    redis = redis_version()
    with tempfile.TemporaryDirectory(prefix="ddp-video-jobs-") as temp:
        work = Path(temp)
        if args.clip is not None:
            clip, source = args.clip, f"`{args.clip}`"
        else:
            frames = max(1, round(args.clip_seconds * args.clip_fps))
            print(f"[{MODULE}] rendering the clip", file=sys.stderr, flush=True)
            clip = render_clip(
                work / "clip.mp4",
                frames=frames,
                size=args.clip_size,
                fps=args.clip_fps,
                persons=args.clip_persons,
                seed=0,
                crf=28,
            )
            source = f"rendered: {args.clip_persons} people walking, `model.data.synth`"
        clip_bytes = clip.stat().st_size
        phases, model_id = run_all(args, work, clip)
    clips = [p["jobs"]["clip"] for p in phases if p["jobs"] is not None and p["jobs"]["clip"]]
    report = {
        "environment": env,
        "lscpu": lscpu(),
        "model_id": model_id,
        "redis": redis,
        "clip": clips[0] if clips else None,
        "clip_bytes": clip_bytes,
        "clip_source": source,
        "settings": {
            "jobs": args.jobs,
            "workers": args.workers,
            "image_users": args.image_users,
            "image_scenario": args.image_scenario,
            "baseline_s": args.baseline_s,
            "torch_threads": args.torch_threads,
            "poll_s": args.poll_s,
            "job_timeout_s": args.job_timeout_s,
        },
        "phases": phases,
        "speedup": speedup(phases),
        "jobs_lost": sum(p["jobs"]["lost"] for p in phases if p["jobs"] is not None),
    }
    write_outputs(args.out, STEM, report, markdown=render_markdown, plot=plot)
    return report


if __name__ == "__main__":
    main()
