"""The HTTP service under load: batching on vs off, and mixed image sizes padded into one
forward pass vs grouped by size; padding's effect on results; memory over 1,000 requests.

``python -m benchmarks.service_batching --out docs/benchmarks``

Three real uvicorn servers serve the same network, ``--config`` with random weights whose
detection thresholds are 0 and which keeps 3 detections (``model.checkpoint.random_checkpoint``),
so every image yields 3 persons and post-processing and encoding cost what they cost with
persons found. Variants (server settings): ``group`` (``max_batch_size`` N, batch_mode
group), ``pad`` (N, pad) and ``off`` (max_batch_size 1). Workloads:

* ``uniform``: ``examples/toy_scene.png`` (384x480) at every ``--concurrency``; group vs off
  (with one image size, pad and group compute the same passes);
* ``mixed``: the scene as 384x480, rotated to 480x384 and cropped to 384x384 (resized for the
  network: 384x480, 480x384, 384x384; padded together: 480x480), client i sending image
  i, i+1, ... in turn, at each ``--mixed-concurrency``; pad vs group.

A point (workload, concurrency) drives each of its variants with closed-loop clients (each
sends its next request when the previous answer arrives) in ``--rounds`` rounds whose order
rotates (:func:`benchmarks.common.interleaved`); each client sends at least
``--per-client`` requests, and a point at least ``--min-requests`` per variant. The machine
is shared: the CPU time that processes other than this benchmark and its servers take during
a point is measured from ``/proc``; a point where it exceeds :data:`CONTENDED_ABOVE` of the
machine is run again (``--retries``, within ``--retry-budget-s``), the least contended
attempt is kept, and flagged if it stays contended.

Padding's effect, in this process: each mixed image's result alone against its result in
one padded forward pass of all three, and (the control) the first image alone against its
copies in one same-shape batch. Memory: each server's RSS after its warm-up (full batches
of the mixed sizes) and after every point, and a fourth server (the ``tiny`` network, pad
mode, mixed sizes, 4 clients) answering ``--memory-requests`` requests between two RSS
readings.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.common import (
    Case,
    StageClock,
    describe,
    environment,
    interleaved,
    markdown_table,
    write_outputs,
)
from model.checkpoint import random_checkpoint
from model.config import get_config
from model.inference.predictor import Predictor
from model.outputs.encoding import paste_parts_uv
from model.paths import CHECKOUT
from model.structures import DensePoseResult
from service.batching import DEFAULT_MAX_BATCH_SIZE
from service.settings import BatchMode, Settings
from service.testing import ServerProcess, encode, tiny_checkpoint

MODULE = "benchmarks.service_batching"
IMAGE = CHECKOUT / "examples" / "toy_scene.png"
CONTENDED_ABOVE = 0.25
"""A point during which other processes took more than this share of the machine's CPU time
is run again (``--retries``), and flagged if it stays so."""
WORKLOADS = {"uniform": ("group", "off"), "mixed": ("pad", "group")}
"""The variants each workload compares; the last is the baseline of its verdict."""


@dataclass(frozen=True)
class Variant:
    max_batch_size: int
    batch_mode: BatchMode

    def label(self) -> str:
        if self.max_batch_size == 1:
            return "batch 1"
        return f"batch {self.max_batch_size} {self.batch_mode}"


def variants(max_batch_size: int) -> dict[str, Variant]:
    return {
        "group": Variant(max_batch_size, "group"),
        "pad": Variant(max_batch_size, "pad"),
        "off": Variant(1, "group"),
    }


def mixed_images(scene: np.ndarray) -> list[np.ndarray]:
    """The scene (H, W, 3), rotated to (W, H, 3), and its centred (H, H, 3) crop."""
    height, width = scene.shape[:2]
    left = (width - height) // 2
    rotated = np.ascontiguousarray(np.rot90(scene))
    return [scene, rotated, np.ascontiguousarray(scene[:, left : left + height])]


@dataclass
class Drive:
    """What the clients of one run saw: each answer's latency and the service's timings."""

    latencies_s: list[float] = field(default_factory=list)
    timings: list[dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0


def post(client: httpx.Client, data: bytes) -> dict[str, Any]:
    response = client.post("/densepose", files={"file": ("x", data, "image/png")})
    response.raise_for_status()
    return dict(response.json())


def drive(url: str, uploads: Sequence[bytes], *, clients: int, per_client: int) -> Drive:
    """``clients`` closed-loop clients, ``per_client`` requests each; client i sends
    ``uploads[i]``, ``uploads[i + 1]``, ... (cyclically)."""

    def client_loop(index: int) -> Drive:
        seen = Drive()
        with httpx.Client(base_url=url, timeout=300) as client:
            for k in range(per_client):
                start = time.perf_counter()
                answer = post(client, uploads[(index + k) % len(uploads)])
                seen.latencies_s.append(time.perf_counter() - start)
                seen.timings.append(answer["timings"])
        return seen

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        seen = list(pool.map(client_loop, range(clients)))
    return Drive(
        [s for one in seen for s in one.latencies_s],
        [t for one in seen for t in one.timings],
        time.perf_counter() - start,
    )


def summarize(runs: Sequence[Drive]) -> dict[str, Any]:
    """Throughput over the runs' summed wall time; latency percentiles; median timings."""
    latencies = np.array([s for run in runs for s in run.latencies_s])
    timings = [t for run in runs for t in run.timings]

    def median(*names: str) -> float:
        return statistics.median(sum(t[name] for name in names) for t in timings)

    return {
        "requests": len(latencies),
        "throughput_rps": len(latencies) / sum(run.wall_s for run in runs),
        "rounds_rps": [len(run.latencies_s) / run.wall_s for run in runs],
        "p50_s": float(np.percentile(latencies, 50)),
        "p95_s": float(np.percentile(latencies, 95)),
        "p99_s": float(np.percentile(latencies, 99)),
        "mean_batch_size": statistics.fmean(t["batch_size"] for t in timings),
        "model_s": median("model_s"),
        "decode_s": median("decode_s"),
        "queue_s": median("queue_s"),
        "encode_s": median("encode_s"),
        "overhead_s": median("decode_s", "queue_s", "encode_s"),
    }


class CpuMeter:
    """The share of the machine's CPU time that processes other than ``pids`` took since
    the meter was made (the machine's busy time, steal included, minus the pids' own)."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._processes = [psutil.Process(pid) for pid in pids]
        self._start = self._read()
        self._started_at = time.monotonic()

    def _read(self) -> tuple[float, float]:
        """(busy seconds of the machine, CPU seconds of the processes, all their threads)."""
        cpu = psutil.cpu_times()
        busy = cpu.user + cpu.nice + cpu.system + cpu.irq + cpu.softirq + cpu.steal
        ours = sum(t.user + t.system for t in (p.cpu_times() for p in self._processes))
        return busy, ours

    def others_share(self) -> float:
        busy, ours = self._read()
        others = (busy - self._start[0]) - (ours - self._start[1])
        wall = time.monotonic() - self._started_at
        return max(0.0, others) / (wall * (os.cpu_count() or 1))


@dataclass
class RetryBudget:
    """Seconds that re-runs of contended points may still take, in all."""

    seconds: float

    def spend(self, duration_s: float) -> bool:
        """Book a re-run expected to take ``duration_s``; False (nothing booked) if over."""
        if duration_s > self.seconds:
            return False
        self.seconds -= duration_s
        return True


def measure_point(
    servers: Mapping[str, ServerProcess],
    uploads: Sequence[bytes],
    *,
    clients: int,
    per_client: int,
    rounds: int,
    pids: Sequence[int],
) -> dict[str, Any]:
    """Each server driven ``rounds`` times, in rotated order, ``per_client`` requests per
    client per round; and the CPU share other processes took meanwhile."""
    runs: dict[str, list[Drive]] = {name: [] for name in servers}

    def case(name: str) -> Case:
        def run(clock: StageClock) -> None:
            runs[name].append(
                drive(servers[name].url, uploads, clients=clients, per_client=per_client)
            )
            clock.lap("total")

        return run

    meter = CpuMeter(pids)
    interleaved({name: case(name) for name in servers}, repeats=rounds, warmup=0)
    return {
        "others_cpu_share": meter.others_share(),
        "variants": {name: summarize(variant_runs) for name, variant_runs in runs.items()},
    }


def least_contended(
    measure: Callable[[], dict[str, Any]], *, retries: int, budget: RetryBudget
) -> dict[str, Any]:
    """``measure()``, again (up to ``retries`` times, within ``budget``) while other
    processes took more than :data:`CONTENDED_ABOVE` of the CPU; the least contended try."""
    attempts: list[dict[str, Any]] = []
    for attempt in range(1 + retries):
        start = time.monotonic()
        attempts.append(measure())
        duration_s = time.monotonic() - start
        share = attempts[-1]["others_cpu_share"]
        if share <= CONTENDED_ABOVE or attempt == retries or not budget.spend(duration_s):
            break
        print(f"  contended (other processes took {100 * share:.0f} % of the CPU), again")
    best = min(attempts, key=lambda attempt: attempt["others_cpu_share"])
    return best | {
        "attempts": len(attempts),
        "contended": best["others_cpu_share"] > CONTENDED_ABOVE,
    }


def per_client_requests(args: argparse.Namespace, clients: int) -> int:
    """Per client per round: at least ``--per-client`` and ``--min-requests`` in all."""
    total = max(args.per_client, math.ceil(args.min_requests / clients))
    return math.ceil(total / int(args.rounds))


def result_difference(alone: DensePoseResult, batched: DensePoseResult) -> dict[str, Any]:
    """How far an image's result in a batch is from its result alone. Persons are compared
    rank by rank (by score): the largest score and box-corner differences; over the pixels
    either labels, the share whose part label I differs; the largest U or V difference where
    the labels agree."""
    first = torch.argsort(alone.scores, descending=True)
    second = torch.argsort(batched.scores, descending=True)
    n = min(len(first), len(second))
    parts_a, u_a, v_a = paste_parts_uv(alone)
    parts_b, u_b, v_b = paste_parts_uv(batched)
    labelled = (parts_a > 0) | (parts_b > 0)
    agree = (parts_a == parts_b) & (parts_a > 0)
    uv_diff = torch.maximum((u_a - u_b).abs(), (v_a - v_b).abs())[agree]
    return {
        "persons": [len(alone), len(batched)],
        "max_score_diff": _max(alone.scores[first[:n]] - batched.scores[second[:n]]),
        "max_box_diff_px": _max(alone.boxes_xyxy[first[:n]] - batched.boxes_xyxy[second[:n]]),
        "label_disagreement": float((parts_a != parts_b)[labelled].float().mean())
        if labelled.any()
        else 0.0,
        "max_uv_diff": _max(uv_diff),
    }


def _max(values: torch.Tensor) -> float:
    return float(values.abs().max()) if values.numel() else 0.0


def padding_effect(weights: Path, images: Sequence[np.ndarray]) -> dict[str, Any]:
    """Each image alone vs all in one padded pass; the first alone vs a same-shape batch."""
    predictor = Predictor.from_checkpoint(weights, device="cpu")
    alone = [predictor([image])[0] for image in images]
    padded = predictor(images)
    same_shape = predictor([images[0]] * len(images))
    return {
        "pad": [
            {"shape": list(image.shape[:2]), **result_difference(one, other)}
            for image, one, other in zip(images, alone, padded, strict=True)
        ],
        "group": [
            {"shape": list(images[0].shape[:2]), **result_difference(alone[0], other)}
            for other in same_shape
        ],
    }


def memory(
    weights: Path,
    uploads: Sequence[bytes],
    *,
    requests: int,
    clients: int,
    max_batch_size: int,
    log: Path,
) -> dict[str, Any]:
    server = ServerProcess(
        {"weights": str(weights), "max_batch_size": str(max_batch_size), "batch_mode": "pad"},
        log_path=log,
    )
    with server:
        warmup = drive(server.url, uploads, clients=clients, per_client=math.ceil(50 / clients))
        before = server.rss_bytes()
        measured = drive(server.url, uploads, clients=clients, per_client=requests // clients)
        after = server.rss_bytes()
    return {
        "warmup_requests": len(warmup.latencies_s),
        "requests": len(measured.latencies_s),
        "clients": clients,
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
    }


def memory_sample(server: ServerProcess) -> list[float]:
    """[requests the server computed so far (its ``ddp_batch_size`` sum), its RSS in MiB]."""
    for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text):
        for sample in family.samples:
            if sample.name == "ddp_batch_size_sum":
                return [sample.value, server.rss_bytes() / 2**20]
    raise RuntimeError(f"no ddp_batch_size_sum in {server.url}/metrics")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for service_batching.*")
    parser.add_argument("--config", default="default", help="network served (random weights)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--mixed-concurrency", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--per-client", type=int, default=20, help="least requests per client")
    parser.add_argument("--min-requests", type=int, default=40, help="least per variant, point")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per point")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE["cpu"])
    parser.add_argument(
        "--max-wait-ms", type=float, default=Settings.model_fields["max_wait_ms"].default
    )
    parser.add_argument("--retries", type=int, default=1, help="re-runs of a contended point")
    parser.add_argument("--retry-budget-s", type=float, default=60.0)
    parser.add_argument("--memory-requests", type=int, default=1000)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write service_batching.{json,md,png}; return the report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    scene = np.array(Image.open(IMAGE).convert("RGB"))
    images = mixed_images(scene)
    uploads = {"uniform": [encode(scene)], "mixed": [encode(image) for image in images]}
    report: dict[str, Any] = {
        "environment": environment(module=MODULE, argv=argv, threads=torch.get_num_threads()),
        "settings": {
            "config": f"{args.config} (random weights, 3 persons per image)",
            "image": IMAGE.name,
            "mixed_shapes": [list(image.shape[:2]) for image in images],
            "max_batch_size": args.max_batch_size,
            "max_wait_ms": args.max_wait_ms,
            "per_client": args.per_client,
            "min_requests": args.min_requests,
            "rounds": args.rounds,
            "contended_above": CONTENDED_ABOVE,
        },
        "variants": {name: v.label() for name, v in variants(args.max_batch_size).items()},
        "points": [],
    }
    budget = RetryBudget(args.retry_budget_s)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        weights = random_checkpoint(Path(tmp) / "net.safetensors", get_config(args.config))
        servers = {
            name: stack.enter_context(
                ServerProcess(
                    {
                        "weights": str(weights),
                        "max_batch_size": str(variant.max_batch_size),
                        "batch_mode": variant.batch_mode,
                        "max_wait_ms": str(args.max_wait_ms),
                        "queue_size": "256",
                    },
                    log_path=Path(tmp) / f"{name}.log",
                )
            )
            for name, variant in variants(args.max_batch_size).items()
        }
        rss: dict[str, list[list[float]]] = {name: [] for name in servers}
        for name, server in servers.items():  # full batches of every image size
            clients = args.max_batch_size
            drive(server.url, uploads["mixed"], clients=clients, per_client=len(images))
            rss[name].append(memory_sample(server))
        pids = [os.getpid(), *(server.pid for server in servers.values())]
        levels = {"uniform": args.concurrency, "mixed": args.mixed_concurrency}
        for workload, names in WORKLOADS.items():
            for clients in levels[workload]:
                measure = partial(
                    measure_point, {name: servers[name] for name in names}, uploads[workload],
                    clients=clients, per_client=per_client_requests(args, clients),
                    rounds=args.rounds, pids=pids,
                )  # fmt: skip
                point = least_contended(measure, retries=args.retries, budget=budget)
                report["points"].append({"workload": workload, "concurrency": clients, **point})
                print(_progress(report["points"][-1]), flush=True)
                for name, server in servers.items():
                    rss[name].append(memory_sample(server))
        report["server_rss"] = rss
        stack.close()
        report["padding_effect"] = padding_effect(weights, images)
        report["memory"] = memory(
            tiny_checkpoint(Path(tmp) / "tiny.safetensors"), uploads["mixed"],
            requests=args.memory_requests, clients=4, max_batch_size=args.max_batch_size,
            log=Path(tmp) / "memory.log",
        )  # fmt: skip
    write_outputs(args.out, "service_batching", report, markdown=render_markdown, plot=plot)
    return report


def _progress(point: dict[str, Any]) -> str:
    rates = ", ".join(
        f"{name} {v['throughput_rps']:.2f} req/s p99 {1000 * v['p99_s']:.0f} ms"
        for name, v in point["variants"].items()
    )
    return (
        f"{point['workload']} x{point['concurrency']}: {rates} "
        f"(others {100 * point['others_cpu_share']:.0f} % CPU, {point['attempts']} tries)"
    )


def render_markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    labels = report["variants"]
    headers = [
        "variant",
        "clients",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "requests",
        "batch",
        "model ms",
        "decode ms",
        "queue ms",
        "encode ms",
        "others' CPU",
    ]
    sections = []
    for workload, names in WORKLOADS.items():
        rows = [
            [
                labels[name], str(point["concurrency"]), f"{v['throughput_rps']:.2f}",
                f"{1000 * v['p50_s']:.0f}", f"{1000 * v['p95_s']:.0f}",
                f"{1000 * v['p99_s']:.0f}", str(v["requests"]), f"{v['mean_batch_size']:.2f}",
                f"{1000 * v['model_s']:.0f}", f"{1000 * v['decode_s']:.1f}",
                f"{1000 * v['queue_s']:.1f}", f"{1000 * v['encode_s']:.1f}",
                f"{100 * point['others_cpu_share']:.0f} %{' (!)' if point['contended'] else ''}",
            ]
            for point in report["points"] if point["workload"] == workload
            for name in names for v in [point["variants"][name]]
        ]  # fmt: skip
        verdict = _verdict(report, workload)
        sections.append(f"## {workload}\n\n{markdown_table(headers, rows)}\n{verdict}")
    effect_rows = [
        [
            labels[mode], "x".join(map(str, row["shape"])), "/".join(map(str, row["persons"])),
            f"{row['max_score_diff']:.1e}", f"{row['max_box_diff_px']:.1f}",
            f"{100 * row['label_disagreement']:.1f} %", f"{row['max_uv_diff']:.1e}",
        ]
        for mode, rows in report["padding_effect"].items() for row in rows
    ]  # fmt: skip
    effect = markdown_table(
        ["batched as", "image", "persons alone/batched", "max score diff", "max box diff px",
         "part labels differing", "max U/V diff"],
        effect_rows,
    )  # fmt: skip
    rss = "\n".join(
        f"* {labels[name]}: "
        + ", ".join(f"{mib:.0f} ({requests:.0f})" for requests, mib in samples)
        for name, samples in report["server_rss"].items()
    )
    mem = report["memory"]
    return (
        "# Service: batching on vs off, padded vs grouped by size\n\n"
        f"{describe(report['environment'])}\n\n"
        f"Model: {settings['config']}; uniform image `{settings['image']}`, mixed shapes "
        f"{', '.join('x'.join(map(str, s)) for s in settings['mixed_shapes'])}. Batching: "
        f"max_batch_size {settings['max_batch_size']}, max_wait_ms {settings['max_wait_ms']:g}. "
        f"Closed-loop clients, at least {settings['per_client']} requests each and "
        f"{settings['min_requests']} per variant and point, in {settings['rounds']} "
        "interleaved rounds. Latency is client-side (upload to answer); model ms is the "
        "median duration of the forward call a request ran in; decode, queue (batch window "
        "included) and encode are medians. Others' CPU: the share of the machine's CPU time "
        "that processes other than the benchmark and its servers took during the point; "
        f"(!) above {100 * settings['contended_above']:.0f} % after retries.\n\n"
        + "\n".join(sections)
        + "\n## Padding's effect on results\n\n"
        "Each mixed image alone vs the three in one padded forward pass (`pad`), and the "
        "first image alone vs a batch of its copies (`group`, the control). Persons compared "
        "rank by rank (by score); part labels over the pixels either result labels.\n\n"
        f"{effect}\n"
        "## Memory\n\nEach server's RSS in MiB (requests computed so far) after its warm-up "
        f"({settings['max_batch_size']} clients, mixed sizes) and after every point:\n\n"
        f"{rss}\n\n"
        f"Tiny network (3 persons per image), pad mode, mixed sizes, {mem['clients']} "
        f"clients: RSS {mem['rss_before_mib']:.1f} MiB after {mem['warmup_requests']} warm-up "
        f"requests, "
        f"{mem['rss_after_mib']:.1f} MiB after {mem['requests']} more.\n"
    )


def _verdict(report: dict[str, Any], workload: str) -> str:
    """Throughput of each variant over the workload's baseline (its last), per concurrency."""
    *names, baseline = WORKLOADS[workload]
    labels = report["variants"]
    lines = [
        f"* concurrency {point['concurrency']}: "
        + ", ".join(f"{labels[name]} {rates[name] / rates[baseline]:.2f}x" for name in names)
        + f" the throughput of {labels[baseline]}"
        for point in report["points"] if point["workload"] == workload
        for rates in [{name: v["throughput_rps"] for name, v in point["variants"].items()}]
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right, memory_axes) = plt.subplots(1, 3, figsize=(15, 4))
    for workload, names in WORKLOADS.items():
        points = [p for p in report["points"] if p["workload"] == workload]
        style = "-" if workload == "uniform" else ":"
        for name in names:
            label = f"{workload}: {report['variants'][name]}"
            x = [p["concurrency"] for p in points]
            rates = [p["variants"][name]["throughput_rps"] for p in points]
            p95 = [1000 * p["variants"][name]["p95_s"] for p in points]
            left.plot(x, rates, style, marker="o", label=label)
            right.plot(x, p95, style, marker="o", label=label)
    left.set(xscale="log", xlabel="concurrent clients", ylabel="requests / s", title="throughput")
    right.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="ms",
              title="p95 latency")  # fmt: skip
    for name, samples in report["server_rss"].items():
        requests, mib = zip(*samples, strict=True)
        memory_axes.plot(requests, mib, marker="o", label=report["variants"][name])
    memory_axes.set(xlabel="requests computed", ylabel="MiB", title="server RSS")
    for axes in (left, right, memory_axes):
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
