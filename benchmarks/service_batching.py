"""Service throughput and latency vs concurrency, batching on vs off, and memory over requests.

``python -m benchmarks.service_batching --out docs/benchmarks``

Two real uvicorn servers run side by side (same model, ``max_batch_size`` N vs 1); each
concurrency level drives both in turn with closed-loop clients (each sends its next request
when the previous answer arrives). A third server (the ``tiny`` test network, 3 persons per
image) answers ``--memory-requests`` requests between two RSS readings.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from benchmarks.common import describe, environment, markdown_table, write_outputs
from service.testing import ServerProcess, tiny_checkpoint

MODULE = "benchmarks.service_batching"
IMAGE = Path(__file__).resolve().parent.parent / "examples" / "toy_scene.png"


def post(client: httpx.Client, data: bytes) -> dict[str, Any]:
    response = client.post("/densepose", files={"file": ("x", data, "image/png")})
    response.raise_for_status()
    return dict(response.json())


def drive(url: str, data: bytes, *, clients: int, per_client: int) -> dict[str, Any]:
    """``clients`` closed-loop clients, ``per_client`` requests each: throughput, latency."""

    def client_loop(_: int) -> list[tuple[float, dict[str, Any]]]:
        with httpx.Client(base_url=url, timeout=300) as client:
            out = []
            for _ in range(per_client):
                start = time.perf_counter()
                answer = post(client, data)
                out.append((time.perf_counter() - start, answer))
            return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        runs = [item for items in pool.map(client_loop, range(clients)) for item in items]
    wall = time.perf_counter() - start
    latencies = np.array([seconds for seconds, _ in runs])
    timings = [answer["timings"] for _, answer in runs]
    return {
        "requests": len(runs),
        "throughput_rps": len(runs) / wall,
        "p50_s": float(np.percentile(latencies, 50)),
        "p95_s": float(np.percentile(latencies, 95)),
        "p99_s": float(np.percentile(latencies, 99)),
        "mean_batch_size": statistics.fmean(t["batch_size"] for t in timings),
        "model_s": statistics.median(t["model_s"] for t in timings),
        "overhead_s": statistics.median(
            t["decode_s"] + t["queue_s"] + t["encode_s"] for t in timings
        ),
    }


def memory(weights: Path, data: bytes, *, requests: int, log: Path) -> dict[str, Any]:
    server = ServerProcess({"weights": str(weights)}, log_path=log)
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(50):
            post(client, data)
        before = server.rss_bytes()
        for _ in range(requests):
            post(client, data)
        after = server.rss_bytes()
    return {"requests": requests, "rss_before_mib": before / 2**20, "rss_after_mib": after / 2**20}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for service_batching.*")
    parser.add_argument("--config", default="default", help="untrained config served")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--per-client", type=int, default=3, help="requests per client")
    parser.add_argument("--max-batch-size", type=int, default=4)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--memory-requests", type=int, default=1000)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = parse_args(argv)
    data = IMAGE.read_bytes()
    report: dict[str, Any] = {
        "environment": environment(module=MODULE, argv=argv, threads=torch.get_num_threads()),
        "settings": {
            "config": f"{args.config} (untrained)",
            "image": IMAGE.name,
            "max_batch_size": args.max_batch_size,
            "max_wait_ms": args.max_wait_ms,
            "per_client": args.per_client,
        },
        "levels": [],
    }
    modes = {"batching": args.max_batch_size, "batch size 1": 1}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        servers = {
            mode: ServerProcess(
                {
                    "weights": f"{tmp}/none.safetensors",
                    "untrained_config": args.config,
                    "max_batch_size": str(size),
                    "max_wait_ms": str(args.max_wait_ms),
                    "queue_size": "256",
                },
                log_path=Path(tmp) / f"{size}.log",
            )
            for mode, size in modes.items()
        }
        for server in servers.values():
            stack.enter_context(server)
        for clients in args.concurrency:
            for mode, server in servers.items():
                result = drive(server.url, data, clients=clients, per_client=args.per_client)
                report["levels"].append({"mode": mode, "concurrency": clients, **result})
                print(mode, clients, {k: round(v, 3) for k, v in result.items()}, flush=True)
        stack.close()
        weights = tiny_checkpoint(Path(tmp) / "tiny.safetensors")
        report["memory"] = memory(
            weights, data, requests=args.memory_requests, log=Path(tmp) / "memory.log"
        )
    write_outputs(args.out, "service_batching", report, markdown=render_markdown, plot=plot)
    return report


def render_markdown(report: dict[str, Any]) -> str:
    rows = [
        [
            level["mode"],
            str(level["concurrency"]),
            f"{level['throughput_rps']:.2f}",
            f"{1000 * level['p50_s']:.0f}",
            f"{1000 * level['p95_s']:.0f}",
            f"{1000 * level['p99_s']:.0f}",
            f"{level['mean_batch_size']:.2f}",
            f"{1000 * level['model_s']:.0f}",
            f"{1000 * level['overhead_s']:.1f}",
        ]
        for level in sorted(report["levels"], key=lambda lv: (lv["concurrency"], lv["mode"]))
    ]
    table = markdown_table(
        ["mode", "clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "batch", "model ms",
         "decode+queue+encode ms"],
        rows,
    )  # fmt: skip
    mem = report["memory"]
    settings = report["settings"]
    return (
        "# Service: batching on vs off\n\n"
        f"{describe(report['environment'])}\n\n"
        f"Model: {settings['config']}, image `{settings['image']}`, {settings['per_client']} "
        f"requests per closed-loop client; batching = max_batch_size "
        f"{settings['max_batch_size']}, max_wait_ms {settings['max_wait_ms']:g}. Latency is "
        "client-side (upload to answer); model ms is the median duration of the batch a "
        "request ran in.\n\n"
        f"{table}\n\n"
        f"Memory (tiny network, 3 persons per image): RSS {mem['rss_before_mib']:.1f} MiB after "
        f"50 warm-up requests, {mem['rss_after_mib']:.1f} MiB after {mem['requests']} more.\n"
    )


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in dict.fromkeys(level["mode"] for level in report["levels"]):
        levels = [lv for lv in report["levels"] if lv["mode"] == mode]
        x = [lv["concurrency"] for lv in levels]
        left.plot(x, [lv["throughput_rps"] for lv in levels], marker="o", label=mode)
        right.plot(x, [1000 * lv["p95_s"] for lv in levels], marker="o", label=f"{mode} p95")
        right.plot(x, [1000 * lv["p50_s"] for lv in levels], ls="--", label=f"{mode} p50")
    left.set(xscale="log", xlabel="concurrent clients", ylabel="requests / s", title="throughput")
    right.set(xscale="log", xlabel="concurrent clients", ylabel="ms", title="latency")
    for axes in (left, right):
        axes.legend()
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
