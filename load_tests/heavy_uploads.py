"""A heavy neighbour on a running service: what one client sending legal, very large photos
(a 33 MP phone photo by default) does to the latency of the clients sending ordinary ones, and
to the server's memory (issue 17, point 1).

``python -m load_tests.heavy_uploads --host http://127.0.0.1:8000 --out docs/benchmarks``

Three phases, each ``--seconds`` long: ``heavy alone`` (one closed-loop client sending the
heavy photo: the cost of one heavy request), ``small alone`` (``--clients`` closed-loop
clients sending ``load_tests/images/persons_NN.jpg``), ``small + heavy`` (both at once). The
heavy photo is that same image upscaled to ``--heavy-size`` (its people grow with it, so each
covers a large part of the photo: the costly case), encoded as a JPEG once. The server's
resident memory (``process_resident_memory_bytes``) is read from ``/metrics`` every
``--sample-s``.

Reported: per phase and client kind, requests, statuses, p50/p99/max latency; the peak
resident memory per phase; and the check the issue asks for: the ordinary clients' p99 with
the heavy neighbour against their p99 alone plus one heavy request's median (the most one
bounded request ahead of them can add). Writes ``heavy_uploads.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from benchmarks.common import (
    describe,
    image_size,
    markdown_table,
    save_figure,
    write_outputs,
)
from load_tests.metrics import parse, total
from load_tests.overload import Upload
from load_tests.raw_http import KeepAliveClient
from load_tests.scenarios import PERSON_COUNTS, load_images, report_parser, served_environment

MODULE = "load_tests.heavy_uploads"
STEM = "heavy_uploads"
PHASES = ("heavy alone", "small alone", "small + heavy")
HEADERS = ("phase", "client", "requests", "statuses", "p50 ms", "p99 ms", "max ms",
           "peak server RSS MiB")  # fmt: skip


def upscaled_jpeg(jpeg: bytes, height: int, width: int, *, quality: int = 90) -> bytes:
    """``jpeg`` resized to ``height`` x ``width`` (bilinear), encoded again as a JPEG."""
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    buffer = io.BytesIO()
    image.resize((width, height), Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


async def closed_loop(
    client: KeepAliveClient, kind: str, deadline: float, start: float
) -> list[dict[str, Any]]:
    """Requests one after the other until ``deadline``: when each was sent (seconds from
    ``start``), its status (0: a transport error) and latency."""
    outcomes = []
    try:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                status = await client.send()
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                status = 0
            outcomes.append(
                {"kind": kind, "sent_s": sent - start, "status": status,
                 "latency_s": time.perf_counter() - sent}
            )  # fmt: skip
    finally:
        await client.close()
    return outcomes


async def resident_memory(url: str, stop: asyncio.Event, sample_s: float) -> list[float]:
    """The server's resident memory in bytes, every ``sample_s`` until ``stop``."""
    samples = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not stop.is_set():
            answer = await client.get("/metrics")
            samples.append(total(parse(answer.text), "process_resident_memory_bytes"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), sample_s)
    return samples


async def run_phase(
    url: str,
    *,
    small: Upload | None,
    clients: int,
    heavy: Upload | None,
    seconds: float,
    sample_s: float,
    timeout_s: float,
) -> dict[str, Any]:
    """One phase: ``clients`` small clients (if ``small``) and one heavy client (if
    ``heavy``), closed loops for ``seconds``; their outcomes and the memory samples."""
    stop = asyncio.Event()
    sampler = asyncio.create_task(resident_memory(url, stop, sample_s))
    start = time.perf_counter()
    deadline = start + seconds
    loops = []
    if small is not None:
        loops += [
            closed_loop(small.client(url, timeout_s=timeout_s), "small", deadline, start)
            for _ in range(clients)
        ]
    if heavy is not None:
        loops.append(closed_loop(heavy.client(url, timeout_s=timeout_s), "heavy", deadline, start))
    results = await asyncio.gather(*loops)
    stop.set()
    return {
        "seconds": time.perf_counter() - start,
        "outcomes": [outcome for mine in results for outcome in mine],
        "rss_bytes": await sampler,
    }


def latency_summary(outcomes: Sequence[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """Requests of ``kind``: count, statuses, p50/p99/max latency of the 2xx (None: none)."""
    mine = [o for o in outcomes if o["kind"] == kind]
    if not mine:
        return None
    served = [o["latency_s"] for o in mine if 200 <= o["status"] < 300]
    statuses: dict[str, int] = {}
    for outcome in mine:
        statuses[str(outcome["status"])] = statuses.get(str(outcome["status"]), 0) + 1

    def percentile(q: float) -> float:
        return float(np.percentile(served, q)) if served else math.nan

    return {
        "requests": len(mine),
        "statuses": dict(sorted(statuses.items())),
        "p50_s": percentile(50),
        "p99_s": percentile(99),
        "max_s": max(served) if served else math.nan,
    }


def summarize(phases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per phase and kind the latencies, the peak memory, and the bound check: the small
    clients' p99 with the heavy neighbour against their p99 alone + one heavy median."""
    table = {
        name: {
            "seconds": phase["seconds"],
            "small": latency_summary(phase["outcomes"], "small"),
            "heavy": latency_summary(phase["outcomes"], "heavy"),
            "peak_rss_bytes": max(phase["rss_bytes"], default=math.nan),
        }
        for name, phase in phases.items()
    }
    heavy_alone = table["heavy alone"]["heavy"]
    small_alone = table["small alone"]["small"]
    mixed = table["small + heavy"]["small"]
    bound = small_alone["p99_s"] + heavy_alone["p50_s"]
    return {
        "phases": table,
        "small_p99_bound_s": bound,
        "small_p99_within_bound": bool(mixed["p99_s"] <= bound),
        "non_2xx": sum(
            1
            for phase in phases.values()
            for o in phase["outcomes"]
            if not 200 <= o["status"] < 300
        ),
    }


def render_markdown(report: dict[str, Any]) -> str:
    summary = report["summary"]
    rows = []
    for name, phase in summary["phases"].items():
        for kind in ("small", "heavy"):
            stats = phase[kind]
            if stats is None:
                continue
            rows.append(
                [
                    name,
                    kind,
                    str(stats["requests"]),
                    ", ".join(f"{s}: {n}" for s, n in stats["statuses"].items()),
                    f"{1000 * stats['p50_s']:.0f}",
                    f"{1000 * stats['p99_s']:.0f}",
                    f"{1000 * stats['max_s']:.0f}",
                    f"{phase['peak_rss_bytes'] / 2**20:.0f}",
                ]
            )
    settings = report["settings"]
    mixed = summary["phases"]["small + heavy"]["small"]
    verdict = "within" if summary["small_p99_within_bound"] else "**over**"
    return "\n".join(
        [
            "# A heavy neighbour: very large photos beside ordinary ones",
            "",
            describe(report["environment"]),
            "",
            f"Small clients: {settings['clients']} closed loops sending "
            f"`persons_{settings['persons']:02d}.jpg` ({settings['small_bytes']:,} bytes); the "
            f"heavy client: one closed loop sending it upscaled to {settings['heavy_width']} x "
            f"{settings['heavy_height']} ({settings['heavy_bytes']:,} bytes, "
            f"{settings['heavy_width'] * settings['heavy_height'] / 1e6:.1f} MP); "
            f"{settings['seconds']:g} s a phase. Server: `max_image_side` "
            f"{report['server']['limits']['max_image_side']}.",
            "",
            markdown_table(HEADERS, rows),
            "",
            f"The small clients' p99 with the heavy neighbour, {1000 * mixed['p99_s']:.0f} ms, is "
            f"{verdict} their p99 alone plus one heavy request's median "
            f"({1000 * summary['small_p99_bound_s']:.0f} ms). Answers other than 2xx: "
            f"{summary['non_2xx']}.",
            "",
        ]
    )


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4))
    for (name, phase), colour in zip(report["phases"].items(), ("C2", "C0", "C1"), strict=True):
        for kind, marker in (("small", "o"), ("heavy", "s")):
            mine = [o for o in phase["outcomes"] if o["kind"] == kind]
            if mine:
                axis.scatter(
                    [o["sent_s"] for o in mine],
                    [1000 * o["latency_s"] for o in mine],
                    s=10 if kind == "small" else 24,
                    marker=marker,
                    color=colour,
                    label=f"{name}: {kind}",
                )
    axis.set_xlabel("seconds into the phase (request sent)")
    axis.set_ylabel("latency (ms)")
    axis.set_yscale("log")
    axis.legend(fontsize=8)
    axis.set_title("Ordinary photos beside a client sending very large ones")
    save_figure(figure, path, dpi=120)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = report_parser(MODULE, __doc__, STEM)
    parser.add_argument("--persons", type=int, default=3, choices=PERSON_COUNTS)
    parser.add_argument("--clients", type=int, default=2, help="small closed-loop clients")
    parser.add_argument(
        "--heavy-size", type=image_size, default=(6660, 5000), metavar="HxW",
        help="the heavy photo's height x width (default: 33 MP, issue 17's)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase")
    parser.add_argument("--sample-s", type=float, default=0.5, help="memory sampling")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="client timeout")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    server, env = served_environment(args.host, module=MODULE, argv=argv)
    small_jpeg = load_images((args.persons,))[args.persons]
    height, width = args.heavy_size
    heavy_jpeg = upscaled_jpeg(small_jpeg, height, width)
    small, heavy = Upload(small_jpeg), Upload(heavy_jpeg)
    uploads = {"heavy alone": (None, heavy), "small alone": (small, None),
               "small + heavy": (small, heavy)}  # fmt: skip
    phases = {}
    for name in PHASES:
        print(f"phase {name!r}: {args.seconds:g} s", flush=True)
        small_upload, heavy_upload = uploads[name]
        phases[name] = asyncio.run(
            run_phase(
                args.host,
                small=small_upload,
                clients=args.clients,
                heavy=heavy_upload,
                seconds=args.seconds,
                sample_s=args.sample_s,
                timeout_s=args.timeout_s,
            )
        )
    report = {
        "environment": env,
        "host": args.host,
        "server": server,
        "settings": {
            "persons": args.persons,
            "clients": args.clients,
            "seconds": args.seconds,
            "heavy_height": height,
            "heavy_width": width,
            "heavy_bytes": len(heavy_jpeg),
            "small_bytes": len(small_jpeg),
        },
        "summary": summarize(phases),
        "phases": phases,
    }
    write_outputs(args.out, STEM, report, markdown=render_markdown, plot=plot)
    return report


if __name__ == "__main__":
    main()
