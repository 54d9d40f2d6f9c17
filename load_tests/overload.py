"""A step load on a running service: calm, then ``--factor`` (4) times the sustainable rate,
then calm again. What overload must look like: fast 503s (queue full) instead of growing
latency, accepted requests still answered in bounded time, no other 5xx, and a quick return
to normal once the load drops.

``python -m load_tests.overload --host http://127.0.0.1:8000 --out docs/benchmarks``

Open loop (unlike Locust's closed-loop users, which slow down with the service and so hide
an overload): requests are sent at Poisson arrival times of each phase's rate, whatever the
answers, each image ``load_tests/images/persons_NN.jpg`` (``--persons``). The sustainable
rate is ``--sustainable-rps``, or measured first: ``--probe-clients`` closed-loop clients for
``--probe-s`` seconds (the throughput when the service is kept busy). Phases: ``before`` at
``--calm`` x that rate, ``overload`` at ``--factor`` x, ``after`` at ``--calm`` x again.
The queue depth (``ddp_queue_depth``) is read from ``/metrics`` every ``--sample-s``.

Reported per phase: offered and accepted rates, the 503 share, p50/p99 of accepted
requests, other status codes and transport errors; overall: every non-503 5xx (must be 0),
the server's refusals by reason, and recovery: seconds from the end of the overload until
the queue is back to its ``before`` level, and until accepted latency (by send time, 1 s
bins) stays within 1.5 x the ``before`` p99 with no 503s. Writes ``overload.{json,md,png}``.

``--storm-clients N`` (e.g. 64; 0: none) adds a retry storm after the step: N closed-loop
clients that ignore ``Retry-After`` and resend at once for ``--storm-s`` seconds (issue 17's
case: the served rate collapsed when every 503 cost a read and a decode). Reported: served
requests per second and their share of the sustainable rate (the target: at least 0.9), and
the median latency of a 503 (the target: under 5 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import describe, markdown_table, save_figure, write_outputs
from load_tests.metrics import parse, scrape, share_within, total
from load_tests.raw_http import KeepAliveClient, encode_post
from load_tests.scenarios import PERSON_COUNTS, load_images, report_parser, served_environment
from service.metrics import NO_PERSONS_LABEL

MODULE = "load_tests.overload"
STEM = "overload"
RECOVERY_LATENCY_FACTOR = 1.5
FAST_REFUSAL_S = 0.005
"""A 503 should take at most this (issue 17); a bucket bound of the latency histogram."""


@dataclass(frozen=True)
class Phase:
    name: str
    rate_rps: float
    seconds: float


@dataclass(frozen=True)
class Upload:
    """The image every request sends, as a raw JPEG body: a multipart body would be encoded
    again by httpx for each request, CPU that a load generator sharing the machine takes from
    the service it measures."""

    jpeg: bytes

    async def post(self, client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(
            "/densepose", content=self.jpeg, headers={"content-type": "image/jpeg"}
        )

    def client(self, url: str, *, timeout_s: float = 120.0) -> KeepAliveClient:
        """A connection of its own that sends this upload (the storm's and probe's clients)."""
        request = encode_post(url, "/densepose", self.jpeg, "image/jpeg")
        return KeepAliveClient(url, request, timeout_s=timeout_s)


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent (seconds from the start), its phase, its HTTP status
    (0 for a transport error, ``error`` naming it) and its latency in seconds."""

    sent_s: float
    phase: str
    status: int
    latency_s: float
    error: str = ""


def arrivals(phases: Sequence[Phase], seed: int) -> list[tuple[float, str]]:
    """Poisson send times (seconds from the start) and phases, phase after phase."""
    rng = random.Random(seed)
    times: list[tuple[float, str]] = []
    start = 0.0
    for phase in phases:
        t = start + rng.expovariate(phase.rate_rps)
        while t < start + phase.seconds:
            times.append((t, phase.name))
            t += rng.expovariate(phase.rate_rps)
        start += phase.seconds
    return times


async def _send(client: httpx.AsyncClient, upload: Upload, sent_s: float, phase: str) -> Outcome:
    start = time.perf_counter()
    try:
        response = await upload.post(client)
        status, error = response.status_code, ""
    except httpx.HTTPError as failure:
        status, error = 0, type(failure).__name__
    return Outcome(sent_s, phase, status, time.perf_counter() - start, error)


async def _sample_queue(
    url: str, stop: asyncio.Event, every_s: float, start: float
) -> list[tuple[float, float]]:
    samples = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not stop.is_set():
            text = (await client.get("/metrics")).text
            samples.append((time.perf_counter() - start, total(parse(text), "ddp_queue_depth")))
            await asyncio.sleep(every_s)
    return samples


async def drive(
    url: str,
    upload: Upload,
    schedule: Sequence[tuple[float, str]],
    *,
    sample_s: float,
    timeout_s: float,
) -> tuple[list[Outcome], list[tuple[float, float]]]:
    """Send every request of ``schedule`` at its time (open loop); the outcomes and the
    queue-depth samples (seconds, depth)."""
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client:
        start = time.perf_counter()
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_queue(url, stop, sample_s, start))
        tasks = []
        for sent_s, phase in schedule:
            await asyncio.sleep(max(0.0, sent_s - (time.perf_counter() - start)))
            tasks.append(asyncio.create_task(_send(client, upload, sent_s, phase)))
        outcomes = list(await asyncio.gather(*tasks))
        await asyncio.sleep(2 * sample_s)
        stop.set()
        return outcomes, await sampler


def storm(url: str, upload: Upload, *, clients: int, seconds: float) -> dict[str, float]:
    """``clients`` closed-loop clients resending at once whatever the answer (Retry-After
    ignored) for ``seconds``: served (2xx) per second, the 503s and their median latency.
    Each client is a ``KeepAliveClient`` (its own connection, the request encoded once)."""

    async def client_loop(client: KeepAliveClient, deadline: float) -> tuple[int, list[float]]:
        served, refusals = 0, []
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                status = await client.send()
                served += 200 <= status < 300
                if status == 503:
                    refusals.append(time.perf_counter() - start)
        finally:
            await client.close()
        return served, refusals

    async def run() -> dict[str, float]:
        metrics_before = scrape(url)
        start, cpu_start = time.perf_counter(), time.process_time()
        results = await asyncio.gather(
            *(client_loop(upload.client(url), start + seconds) for _ in range(clients))
        )
        elapsed, client_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
        refusals = [s for _, mine in results for s in mine]
        server_fast = share_within(
            metrics_before,
            scrape(url),
            "ddp_request_duration_seconds",
            FAST_REFUSAL_S,
            endpoint="/densepose",
            persons=NO_PERSONS_LABEL,
        )
        return {
            "clients": clients,
            "seconds": elapsed,
            "served_rps": sum(served for served, _ in results) / elapsed,
            "refused": len(refusals),
            "refused_p50_s": _percentile(refusals, 50),
            "client_cpu_s": client_cpu_s,
            "server_refusals_within_5ms": server_fast,
        }

    return asyncio.run(run())


def probe(url: str, upload: Upload, *, clients: int, seconds: float) -> float:
    """Requests per second that ``clients`` closed-loop clients get answered (2xx), each a
    ``KeepAliveClient`` like the storm's."""

    async def client_loop(client: KeepAliveClient, deadline: float) -> int:
        done = 0
        try:
            while time.perf_counter() < deadline:
                done += await client.send() == 200
        finally:
            await client.close()
        return done

    async def run() -> float:
        start = time.perf_counter()
        counts = await asyncio.gather(
            *(client_loop(upload.client(url), start + seconds) for _ in range(clients))
        )
        return sum(counts) / (time.perf_counter() - start)

    return asyncio.run(run())


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def phase_report(outcomes: Sequence[Outcome], phase: Phase) -> dict[str, Any]:
    mine = [o for o in outcomes if o.phase == phase.name]
    accepted = [o.latency_s for o in mine if 200 <= o.status < 300]
    refused = [o.latency_s for o in mine if o.status == 503]
    statuses: dict[str, int] = {}
    for o in mine:
        key = str(o.status) if o.status else f"error {o.error}"
        statuses[key] = statuses.get(key, 0) + 1
    return {
        **asdict(phase),
        "sent": len(mine),
        "offered_rps": len(mine) / phase.seconds,
        "accepted_rps": len(accepted) / phase.seconds,
        "rejected_503_share": statuses.get("503", 0) / len(mine) if mine else 0.0,
        "accepted_p50_s": _percentile(accepted, 50),
        "accepted_p99_s": _percentile(accepted, 99),
        "refused_p50_s": _percentile(refused, 50),
        "statuses": statuses,
    }


def recovery(
    outcomes: Sequence[Outcome], queue: Sequence[tuple[float, float]], phases: Sequence[Phase]
) -> dict[str, float | None]:
    """Seconds after the overload phase ends until (a) the queue depth is back to at most
    its largest ``before`` value for good, (b) every later 1 s bin (by send time) has no 503
    and a p99 of accepted latency within ``RECOVERY_LATENCY_FACTOR`` x the ``before`` p99.
    None: not within the ``after`` phase."""
    names = [p.name for p in phases]
    end = sum(p.seconds for p in phases[: names.index("overload") + 1])
    calm_depth = max((d for t, d in queue if t < phases[0].seconds), default=0.0)
    late = [(t, d) for t, d in queue if t >= end]
    drained = next(
        (t - end for i, (t, _) in enumerate(late) if all(d <= calm_depth for _, d in late[i:])),
        None,
    )
    before = [o.latency_s for o in outcomes if o.phase == "before" and o.status == 200]
    limit = RECOVERY_LATENCY_FACTOR * _percentile(before, 99)
    bins: dict[int, list[Outcome]] = {}
    for o in outcomes:
        if o.sent_s >= end:
            bins.setdefault(int(o.sent_s - end), []).append(o)

    def calm(group: Sequence[Outcome]) -> bool:
        ok = [o.latency_s for o in group if o.status == 200]
        return all(o.status != 503 for o in group) and (not ok or _percentile(ok, 99) <= limit)

    keys = sorted(bins)
    settled = next(
        (float(k) for i, k in enumerate(keys) if all(calm(bins[j]) for j in keys[i:])), None
    )
    return {"queue_drained_s": drained, "latency_recovered_s": settled}


def render_markdown(report: dict[str, Any]) -> str:
    headers = [
        "phase",
        "rate x",
        "s",
        "sent",
        "offered/s",
        "accepted/s",
        "503 %",
        "accepted p50 ms",
        "accepted p99 ms",
        "503 p50 ms",
        "statuses",
    ]
    sustainable = report["sustainable_rps"]
    rows = [
        [
            p["name"],
            f"{p['rate_rps'] / sustainable:.2f}",
            f"{p['seconds']:g}",
            str(p["sent"]),
            f"{p['offered_rps']:.2f}",
            f"{p['accepted_rps']:.2f}",
            f"{100 * p['rejected_503_share']:.1f}",
            f"{1000 * p['accepted_p50_s']:.0f}",
            f"{1000 * p['accepted_p99_s']:.0f}",
            "–" if math.isnan(p["refused_p50_s"]) else f"{1000 * p['refused_p50_s']:.1f}",
            ", ".join(f"{k}: {v}" for k, v in sorted(p["statuses"].items())),
        ]
        for p in report["phases"]
    ]
    rec = report["recovery"]
    storm_line = ""
    if report.get("storm"):
        st = report["storm"]
        storm_line = (
            f"* retry storm: {st['clients']} clients ignoring Retry-After for "
            f"{st['seconds']:.0f} s: {st['served_rps']:.2f} served/s = "
            f"{st['served_rps'] / sustainable:.2f} x the sustainable rate (target >= 0.9); "
            f"{st['refused']} 503s ({st['refused'] / st['seconds']:.0f} a second), median "
            f"{1000 * st['refused_p50_s']:.1f} ms as the clients saw them, "
            f"{100 * st['server_refusals_within_5ms']:.0f} % answered within 5 ms by the "
            f"server's own clock (its latency histogram; refusals beyond the service's "
            f"refusals_per_s wait for their turn); the load generator itself used "
            f"{st['client_cpu_s']:.0f} CPU-s of those {st['seconds']:.0f} s\n"
        )

    def seconds(value: float | None) -> str:
        return "not within the after phase" if value is None else f"{value:.1f} s"

    verdict = "none (pass)" if report["non_503_5xx"] == 0 else f"**{report['non_503_5xx']} (FAIL)**"
    return (
        "# Overload: a step to 4x the sustainable rate and back\n\n"
        f"{describe(report['environment'])}\n\n"
        f"Service `{report['host']}` (model `{report['server'].get('model_id', '?')}`, queue "
        f"{report['server'].get('batching', {}).get('queue_size', '?')}); image with "
        f"{report['settings']['persons']} persons; sustainable rate {sustainable:.2f} req/s "
        f"({report['sustainable_source']}). Open loop, Poisson arrivals. Load generator "
        f"on the same machine at nice {report['settings'].get('nice', 0)}.\n\n"
        + markdown_table(headers, rows)
        + f"\n* non-503 5xx: {verdict}\n"
        f"* server refusals by reason: {report['server_rejections']}\n"
        f"* queue back to its before level: {seconds(rec['queue_drained_s'])} after the step "
        f"down; latency back within {RECOVERY_LATENCY_FACTOR}x the before p99 (no 503s): "
        f"{seconds(rec['latency_recovered_s'])}\n" + storm_line
    )


def _kind(status: int) -> str:
    return "accepted" if 200 <= status < 300 else "503" if status == 503 else "other"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcomes = report["outcomes"]
    figure, (latency_axes, queue_axes) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    kinds = {"accepted": "tab:blue", "503": "tab:orange", "other": "tab:red"}
    for label, colour in kinds.items():
        points = [(o["sent_s"], o["latency_s"]) for o in outcomes if _kind(o["status"]) == label]
        if points:
            x, y = zip(*points, strict=True)
            latency_axes.scatter(x, y, s=4, label=label, color=colour)
    start = 0.0
    for phase in report["phases"]:
        for axes in (latency_axes, queue_axes):
            axes.axvline(start, color="grey", lw=0.5)
        latency_axes.annotate(
            phase["name"], (start, 1.0), xycoords=("data", "axes fraction"), va="top", fontsize=8
        )
        start += phase["seconds"]
    if report["queue_depth"]:
        t, depth = zip(*report["queue_depth"], strict=True)
        queue_axes.plot(t, depth)
    latency_axes.set(ylabel="latency s", yscale="log", title="requests by send time")
    latency_axes.legend(fontsize=8)
    queue_axes.set(xlabel="seconds", ylabel="queue depth")
    save_figure(figure, path)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = report_parser(MODULE, __doc__, STEM)
    parser.add_argument("--persons", type=int, default=3, choices=PERSON_COUNTS)
    parser.add_argument("--sustainable-rps", type=float, help="skip the probe")
    parser.add_argument("--probe-clients", type=int, default=8)
    parser.add_argument("--probe-s", type=float, default=20.0)
    parser.add_argument("--factor", type=float, default=4.0, help="overload x sustainable")
    parser.add_argument("--calm", type=float, default=0.5, help="before/after x sustainable")
    parser.add_argument(
        "--seconds",
        type=float,
        nargs=3,
        default=[20.0, 30.0, 40.0],
        metavar=("BEFORE", "OVERLOAD", "AFTER"),
    )
    parser.add_argument("--timeout-s", type=float, default=120.0, help="client timeout")
    parser.add_argument("--sample-s", type=float, default=0.5, help="queue depth sampling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storm-clients", type=int, default=0, help="retry storm; 0: none")
    parser.add_argument("--storm-s", type=float, default=60.0)
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="lower this load generator's priority by this much (e.g. 10 on a machine it shares "
        "with the service: it then takes only the CPU the service leaves, as clients on other "
        "machines would)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.nice(args.nice)
    server, env = served_environment(args.host, module=MODULE, argv=argv)
    upload = Upload(load_images((args.persons,))[args.persons])
    source = "--sustainable-rps"
    sustainable = args.sustainable_rps
    if sustainable is None:
        sustainable = probe(args.host, upload, clients=args.probe_clients, seconds=args.probe_s)
        source = f"measured: {args.probe_clients} closed-loop clients, {args.probe_s:g} s"
    print(f"sustainable rate {sustainable:.2f} req/s ({source})", flush=True)
    before_s, overload_s, after_s = args.seconds
    phases = [
        Phase("before", args.calm * sustainable, before_s),
        Phase("overload", args.factor * sustainable, overload_s),
        Phase("after", args.calm * sustainable, after_s),
    ]
    metrics_before = scrape(args.host)
    outcomes, queue = asyncio.run(
        drive(
            args.host,
            upload,
            arrivals(phases, args.seed),
            sample_s=args.sample_s,
            timeout_s=args.timeout_s,
        )
    )
    metrics_after = scrape(args.host)
    storm_report = (
        storm(args.host, upload, clients=args.storm_clients, seconds=args.storm_s)
        if args.storm_clients
        else None
    )
    reasons = ("queue_full", "deadline", "shutting_down", "client_disconnected")
    report = {
        "environment": env,
        "host": args.host,
        "server": server,
        "settings": {
            "persons": args.persons,
            "factor": args.factor,
            "calm": args.calm,
            "seed": args.seed,
            "nice": args.nice,
        },
        "sustainable_rps": sustainable,
        "sustainable_source": source,
        "phases": [phase_report(outcomes, phase) for phase in phases],
        "non_503_5xx": sum(1 for o in outcomes if o.status >= 500 and o.status != 503),
        "transport_errors": sum(1 for o in outcomes if o.status == 0),
        "server_rejections": {
            r: total(metrics_after, "ddp_rejected_requests_total", reason=r)
            - total(metrics_before, "ddp_rejected_requests_total", reason=r)
            for r in reasons
        },
        "recovery": recovery(outcomes, queue, phases),
        "storm": storm_report,
        "queue_depth": queue,
        "outcomes": [asdict(o) for o in outcomes],
    }
    write_outputs(args.out, STEM, report, markdown=render_markdown, plot=plot)
    return report


if __name__ == "__main__":
    main()
