"""Shared by the benchmarks: torch set-up, interleaved timing, synthetic persons, reports.

Timing: every case is a callable that marks the end of each of its stages on a
:class:`StageClock`; :func:`interleaved` runs round after round of all cases (each round in a
rotated order), so that the drift of a noisy machine hits every case alike, and keeps each
round's seconds per stage. :func:`medians` condenses the rounds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.device import cpu_info

Seconds = dict[str, float]
"""Seconds per stage of one run of a case."""
X_AGG_STRIDE = 4
"""X_agg, the mask logits and the IUV logits are at 1/4 of the input."""


def x_agg_size(height: int, width: int) -> tuple[int, int]:
    """The X_agg cells covering an image of ``height`` x ``width`` pixels (rounded up)."""
    return -(-height // X_AGG_STRIDE), -(-width // X_AGG_STRIDE)


def image_size(text: str, *, minimum: int = 1) -> tuple[int, int]:
    """``"96x128"`` -> (96, 128), height first: an ``argparse`` type (``functools.partial``
    sets ``minimum``, the least side)."""
    height, _, width = text.lower().partition("x")
    try:
        size = int(height), int(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 96x128), got {text!r}") from None
    if min(size) < minimum:
        raise argparse.ArgumentTypeError(f"need both sides >= {minimum}, got {text!r}")
    return size


class StageClock:
    """Wall-clock laps of one run: ``lap(name)`` books the time since the previous lap."""

    def __init__(self) -> None:
        self.seconds: Seconds = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now


Case = Callable[[StageClock], object]
"""One timed unit of work; it calls ``clock.lap(stage)`` at the end of each of its stages."""


def whole(fn: Callable[[], object]) -> Case:
    """A case of a single stage, ``total``: ``fn()``."""

    def case(clock: StageClock) -> None:
        fn()
        clock.lap("total")

    return case


def interleaved(
    cases: Mapping[str, Case], *, repeats: int, warmup: int = 1
) -> dict[str, list[Seconds]]:
    """Run ``warmup + repeats`` rounds of all cases; the seconds of the last ``repeats``.

    Round r starts at case r mod len(cases), so no case is always first or last.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    names = list(cases)
    samples: dict[str, list[Seconds]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            clock = StageClock()
            cases[name](clock)
            if round_index >= warmup:
                samples[name].append(clock.seconds)
    return samples


def matmul_flops(matmul: tuple[Tensor, Tensor]) -> float:
    """FLOPs of ``torch.mm(*matmul)``: 2 m k n (the reference rate's numerator)."""
    return float(2 * matmul[0].shape[0] * matmul[0].shape[1] * matmul[1].shape[1])


def medians(samples: Sequence[Seconds]) -> Seconds:
    """Median seconds of each stage over the runs, plus ``total`` (median of run totals)."""
    stages = list(samples[0])
    result = {stage: statistics.median(run[stage] for run in samples) for stage in stages}
    result.setdefault("total", statistics.median(sum(run.values()) for run in samples))
    return result


def configure_torch(threads: int) -> None:
    """Intra-op threads for the whole run, and a fixed seed."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    torch.manual_seed(0)


def person_masks(height: int, width: int, *, persons: int, fraction: float) -> Tensor:
    """(persons, height, width) bool person-like blobs whose union covers ``fraction``.

    Person i is a standing body ellipse (3.5 times as tall as wide) topped by a round head,
    centred at x = (i + 0.5) / persons of the width, alternately a little above and below
    the middle, person i drawn at (1 - 0.15 i) times the size of person 0 (depth). A common
    scale is bisected to the smallest one whose union reaches ``fraction``; persons overlap
    and are cut by the image border at large fractions, and ``fraction = 1`` covers all.
    Measure the union (it lands at or just above ``fraction``), do not assume it.
    """
    if not 0.0 < fraction <= 1.0 or persons < 1:
        raise ValueError(f"need 0 < fraction <= 1 and persons >= 1, got {fraction}, {persons}")
    ys = torch.arange(height, dtype=torch.float64)[:, None] + 0.5
    xs = torch.arange(width, dtype=torch.float64)[None, :] + 0.5

    def draw(scale: float) -> Tensor:
        masks = []
        for i in range(persons):
            half_height = scale * (1.0 - 0.15 * i) * height / 2
            cx = (i + 0.5) * width / persons
            cy = height * (0.55 + 0.05 * (-1) ** i)
            head = 0.3 * half_height
            head_cy = cy - half_height - 0.5 * head
            body = ((xs - cx) / (0.35 * half_height)) ** 2 + ((ys - cy) / half_height) ** 2 <= 1
            skull = (xs - cx) ** 2 + (ys - head_cy) ** 2 <= head**2
            masks.append(body | skull)
        return torch.stack(masks)

    def covered(scale: float) -> float:
        return draw(scale).any(0).double().mean().item()

    low, high = 0.0, 1.0
    while covered(high) < fraction:
        low, high = high, 2 * high
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if covered(middle) < fraction else (low, middle)
    return draw(high)


def environment(*, module: str, argv: Sequence[str], threads: int) -> dict[str, Any]:
    """Where and when (the start) the numbers were taken, and the command that took them.

    ``load_average_start`` (1, 5, 15 min) shows whether other work was running;
    :func:`write_outputs` adds ``load_average_end``, which counts this run's threads too.
    """
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m", module, *argv]),
        "cpu": cpu_info().name,
        "cpu_capability": cpu_info().capability,
        "logical_cpus": len(os.sched_getaffinity(0)),
        "torch_threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
    }


def write_outputs(
    out: Path, stem: str, report: dict[str, Any], *,
    markdown: Callable[[dict[str, Any]], str], plot: Callable[[dict[str, Any], Path], None],
) -> None:
    """Stamp the end load average, write ``stem``.json, .md and .png into ``out``, print
    the markdown."""
    report["environment"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (out / f"{stem}.md").write_text(text)
    plot(report, out / f"{stem}.png")
    print(text)


def save_figure(figure: Any, path: Path, *, dpi: int = 100) -> None:
    """Lay out a matplotlib ``figure``, write it to ``path`` and free it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


def describe(env: Mapping[str, Any]) -> str:
    """One markdown line on the command, date, machine and its load."""
    return (
        f"`{env['command']}` — {env['date']}, {env['cpu']}, {env['logical_cpus']} logical "
        f"CPUs, {env['torch_threads']} torch threads, torch {env['torch']}; 1-min load "
        f"average {env['load_average_start'][0]:.2f} at the start, "
        f"{env['load_average_end'][0]:.2f} at the end."
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    return "\n".join(lines) + "\n"
