"""Locust over a grid of concurrency x persons per image against a running service, reported
the way Triton's perf_analyzer does: throughput, latency percentiles, and where the time went
on the server (queue vs compute, from its ``/metrics``).

``python -m load_tests.sweep --host http://127.0.0.1:8000 --out docs/benchmarks``

Each cell (concurrency c, image with N persons) is one headless Locust run of
``--seconds``: c closed-loop users sending ``load_tests/images/persons_NN.jpg``. Around it
the service's ``/metrics`` is read twice (the second time ``--settle-s`` after Locust
stopped, so the cell's last answers are in) and the histograms are diffed
(``load_tests.metrics.server_split``): mean server latency = queue wait
(``ddp_queue_wait_seconds``) + compute (``ddp_model_forward_seconds``, the forward pass a
request rode in) + other (decoding, the batch window, encoding). Client-side numbers are
Locust's (its statistics CSV files, kept under ``--csv-dir``). Writes ``load_sweep.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import describe, markdown_table, save_figure, write_outputs
from load_tests.metrics import Snapshot, scrape, server_split
from load_tests.runner import AGGREGATED, PERCENTILES, Row, run_locust
from load_tests.scenarios import (
    PERSON_COUNTS,
    REJECTED_SUFFIX,
    image_name,
    report_parser,
    served_environment,
)

MODULE = "load_tests.sweep"
STEM = "load_sweep"


def cell_report(
    *,
    persons: int,
    users: int,
    seconds: float,
    rows: Mapping[str, Row],
    before: Snapshot,
    after: Snapshot,
) -> dict[str, Any]:
    """One cell: client statistics of the accepted requests, refusals, the server's split."""
    accepted = rows.get(image_name(persons))
    rejected = rows.get(image_name(persons) + REJECTED_SUFFIX)
    everything = rows[AGGREGATED]
    split = server_split(before, after)
    client: dict[str, Any] = {"requests": 0, "throughput_rps": 0.0}
    if accepted is not None:
        client = {
            "requests": accepted.requests,
            "failures": accepted.failures,
            "throughput_rps": accepted.ok_rps,
            "average_ms": accepted.average_ms,
            "latency_ms": accepted.percentiles_ms,
        }
    return {
        "persons": persons,
        "concurrency": users,
        "seconds": seconds,
        "client": client,
        "rejected_503": rejected.requests if rejected else 0,
        "all_failures": everything.failures,
        "server": dataclasses.asdict(split),
    }


def run_cell(
    host: str, persons: int, users: int, *, seconds: float, settle_s: float, csv_dir: Path
) -> dict[str, Any]:
    before = scrape(host)
    rows = run_locust(
        host,
        f"persons-{persons}",
        users=users,
        seconds=seconds,
        csv_prefix=csv_dir / f"persons{persons:02d}_c{users}",
    )
    time.sleep(settle_s)
    return cell_report(
        persons=persons,
        users=users,
        seconds=seconds,
        rows=rows,
        before=before,
        after=scrape(host),
    )


def render_markdown(report: dict[str, Any]) -> str:
    server = report["server"]
    batching = server.get("batching", {})
    headers = [
        "persons",
        "concurrency",
        "req/s",
        *(f"p{p[:-1]} ms" for p in PERCENTILES),
        "avg ms",
        "server ms",
        "queue ms",
        "compute ms",
        "other ms",
        "batch",
        "503s",
    ]
    rows = []
    for cell in report["cells"]:
        client, split = cell["client"], cell["server"]
        latency = client.get("latency_ms", {})
        rows.append(
            [
                str(cell["persons"]),
                str(cell["concurrency"]),
                f"{client['throughput_rps']:.2f}",
                *(f"{latency.get(p, float('nan')):.0f}" for p in PERCENTILES),
                f"{client.get('average_ms', float('nan')):.0f}",
                f"{1000 * split['latency_s']:.0f}",
                f"{1000 * split['queue_s']:.0f}",
                f"{1000 * split['compute_s']:.0f}",
                f"{1000 * split['other_s']:.0f}",
                f"{split['mean_batch_size']:.2f}",
                str(cell["rejected_503"]),
            ]
        )
    lines = [_perf_analyzer_line(cell) for cell in report["cells"]]
    return (
        "# Service under load: concurrency x persons per image\n\n"
        f"{describe(report['environment'])}\n\n"
        f"Service `{report['host']}`: model `{server.get('model_id', '?')}` on "
        f"{server.get('device', '?')}, {server.get('torch_threads', '?')} torch threads, "
        f"max batch {batching.get('max_batch_size', '?')}, wait "
        f"{batching.get('max_wait_ms', '?')} ms, queue {batching.get('queue_size', '?')}. "
        f"Each cell: {report['settings']['seconds']:g} s of closed-loop Locust users sending "
        "the image with that many persons. Client latency (Locust, accepted requests); "
        "server: mean latency = queue + compute (the forward pass of the request's batch) + "
        "other, from the `/metrics` histograms diffed around the cell; batch: requests per "
        "forward pass.\n\n"
        + markdown_table(headers, rows)
        + "\nperf_analyzer style:\n\n"
        + "\n".join(lines)
        + "\n"
    )


def _perf_analyzer_line(cell: Mapping[str, Any]) -> str:
    client, split = cell["client"], cell["server"]
    latency = client.get("latency_ms", {})
    us = {k: 1e6 * split[k] for k in ("latency_s", "queue_s", "compute_s", "other_s")}
    return (
        f"* persons {cell['persons']}, concurrency {cell['concurrency']}: throughput "
        f"{client['throughput_rps']:.2f} infer/sec, latency p50 "
        f"{1000 * latency.get('50%', float('nan')):.0f} usec, p90 "
        f"{1000 * latency.get('90%', float('nan')):.0f} usec, p95 "
        f"{1000 * latency.get('95%', float('nan')):.0f} usec, p99 "
        f"{1000 * latency.get('99%', float('nan')):.0f} usec; avg server request "
        f"{us['latency_s']:.0f} usec (queue {us['queue_s']:.0f} + compute "
        f"{us['compute_s']:.0f} + other {us['other_s']:.0f})"
    )


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate_axes, p99_axes, split_axes) = plt.subplots(1, 3, figsize=(15, 4))
    for persons in sorted({cell["persons"] for cell in report["cells"]}):
        cells = [c for c in report["cells"] if c["persons"] == persons]
        users = [c["concurrency"] for c in cells]
        rate_axes.plot(
            users,
            [c["client"]["throughput_rps"] for c in cells],
            marker="o",
            label=f"{persons} persons",
        )
        p99 = [c["client"].get("latency_ms", {}).get("99%", float("nan")) for c in cells]
        p99_axes.plot(users, p99, marker="o", label=f"{persons} persons")
    cells = report["cells"]
    labels = [f"{c['persons']}p c{c['concurrency']}" for c in cells]
    bottom = [0.0] * len(cells)
    for part in ("queue_s", "compute_s", "other_s"):
        values = [1000 * c["server"][part] for c in cells]
        split_axes.bar(labels, values, bottom=bottom, label=part[:-2])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    split_axes.tick_params(axis="x", labelrotation=90, labelsize=6)
    rate_axes.set(xscale="log", xlabel="concurrency", ylabel="requests / s", title="throughput")
    p99_axes.set(xscale="log", xlabel="concurrency", ylabel="ms", title="p99 latency (client)")
    split_axes.set(ylabel="ms", title="mean server latency: queue / compute / other")
    for axes in (rate_axes, p99_axes, split_axes):
        axes.legend(fontsize=7)
        axes.grid(alpha=0.3)
    save_figure(figure, path)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = report_parser(MODULE, __doc__, STEM)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument(
        "--persons", type=int, nargs="+", default=list(PERSON_COUNTS), choices=PERSON_COUNTS
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="Locust run per cell")
    parser.add_argument("--settle-s", type=float, default=2.0, help="pause after each cell")
    parser.add_argument(
        "--csv-dir", type=Path, default=Path("out/load_sweep"), help="Locust's CSV files"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    server, env = served_environment(args.host, module=MODULE, argv=argv)
    cells = []
    for persons in args.persons:
        for users in args.concurrency:
            cells.append(
                run_cell(
                    args.host,
                    persons,
                    users,
                    seconds=args.seconds,
                    settle_s=args.settle_s,
                    csv_dir=args.csv_dir,
                )
            )
            print(_perf_analyzer_line(cells[-1]), flush=True)
    report = {
        "environment": env,
        "host": args.host,
        "server": server,
        "settings": {
            "seconds": args.seconds,
            "settle_s": args.settle_s,
            "csv_dir": str(args.csv_dir),
        },
        "cells": cells,
    }
    write_outputs(args.out, STEM, report, markdown=render_markdown, plot=plot)
    return report


if __name__ == "__main__":
    main()
