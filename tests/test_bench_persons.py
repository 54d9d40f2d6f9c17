"""``benchmarks.persons``: the grid and targets of its scenes, its stage split, the scene
builder on the real body model (N persons at the requested size: constant foreground in
series (a), proportional to N in series (b)), and ``ddp bench persons`` end to end on a tiny
random network (files written, numbers well-formed; no claims about speed)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.common import StageClock
from benchmarks.persons import (
    METHODS,
    SERIES,
    STAGES,
    CrowdBuilder,
    ModuleTimer,
    carve,
    grid_shape,
    person_fraction,
)
from model.cli import main as ddp

needs_anny = pytest.mark.skipif(find_spec("anny") is None, reason="needs the 'data' extra")
HEIGHT, WIDTH = 96, 128


@pytest.mark.parametrize(
    ("persons", "shape"), [(0, (0, 0)), (1, (1, 1)), (2, (1, 2)), (4, (1, 4)), (16, (3, 6))]
)
def test_grid_gives_every_person_a_cell(persons: int, shape: tuple[int, int]) -> None:
    rows, cols = grid_shape(persons, 384, 512)
    assert (rows, cols) == shape
    assert rows * cols >= persons and (rows - 1) * cols < max(persons, 1)


def test_series_targets() -> None:
    assert person_fraction("constant_foreground", 4, foreground=0.08, person=0.01) == 0.02
    assert person_fraction("constant_size", 4, foreground=0.08, person=0.01) == 0.01
    with pytest.raises(ValueError, match="unknown series"):
        person_fraction("crowd", 4, foreground=0.08, person=0.01)


class Busy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        end = time.perf_counter() + 0.02
        while time.perf_counter() < end:
            pass
        return x


def test_module_time_is_carved_out_of_its_stage() -> None:
    inner = Busy()
    timer = ModuleTimer({"inner": inner})
    clock = StageClock()
    inner(torch.zeros(1))
    inner(torch.zeros(1))
    clock.lap("outer")
    whole = clock.seconds["outer"]
    carve(clock, "outer", timer)
    assert clock.seconds["inner"] >= 0.04
    assert clock.seconds["outer"] >= 0
    assert clock.seconds["outer"] + clock.seconds["inner"] == pytest.approx(whole)
    assert timer.take() == {"inner": 0.0}  # carving took the seconds


@pytest.fixture(scope="module")
def builder() -> Iterator[CrowdBuilder]:
    from model.data.synth import load_renderer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield CrowdBuilder(load_renderer(), height=HEIGHT, width=WIDTH, seed=0)
    torch.set_num_threads(threads)


@pytest.mark.slow
@needs_anny
def test_constant_foreground_series_keeps_the_total(builder: CrowdBuilder) -> None:
    total = 0.06
    targets = [
        person_fraction("constant_foreground", n, foreground=total, person=0) for n in (1, 2, 4)
    ]
    crowds = [builder.build(n, target) for n, target in zip((1, 2, 4), targets, strict=True)]
    for n, crowd in zip((1, 2, 4), crowds, strict=True):
        assert crowd.persons == n
        assert set(np.unique(crowd.instance)) == set(range(n + 1))
        assert crowd.foreground_fraction == pytest.approx(total, rel=0.08)
        assert crowd.person_fractions == pytest.approx([total / n] * n, rel=0.1)
        assert not crowd.shrunk.any()
    heights = [float(np.mean(c.boxes_xyxy[:, 3] - c.boxes_xyxy[:, 1])) for c in crowds]
    assert heights[0] > heights[1] > heights[2]  # people shrink as N grows


@pytest.mark.slow
@needs_anny
def test_constant_size_series_grows_with_n(builder: CrowdBuilder) -> None:
    each = 0.01
    crowds = {n: builder.build(n, each) for n in (1, 2, 4)}
    for n, crowd in crowds.items():
        assert crowd.persons == n
        assert crowd.foreground_fraction == pytest.approx(n * each, rel=0.08)
        boxes = crowd.boxes_xyxy
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= WIDTH).all()
        assert (boxes[:, 3] <= HEIGHT).all()
    empty = builder.build(0, each)
    assert empty.persons == 0 and empty.foreground_fraction == 0.0
    assert empty.image.shape == (HEIGHT, WIDTH, 3)


@pytest.mark.slow
@needs_anny
def test_bench_persons_end_to_end(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        ddp([
            "bench", "persons", "--out", str(tmp_path), "--untrained", "tiny",
            "--persons", "1", "2", "--repeats", "1", "--warmup", "0",
            "--image-size", f"{HEIGHT}x{WIDTH}", "--threads", str(threads),
            "--foreground", "0.06",
        ])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "persons.json").read_text())
    assert report["network"]["untrained"] == "tiny"
    assert report["environment"]["torch_threads"] == threads
    assert report["settings"]["image_size"] == [HEIGHT, WIDTH]
    assert list(report["series"]) == list(SERIES)
    for data in report["series"].values():
        assert [p["scene"]["persons"] for p in data["points"]] == [1, 2]
        for point in data["points"]:
            assert point["ddp"]["detected"] >= 0
            assert 0.0 <= point["ddp"]["sparse_fraction"] <= 1.0
            for method in METHODS:
                median = point["median_s"][method]
                assert set(median) == {*STAGES[method], "total"}
                assert median["total"] > 0
        assert all(values[0] == 1.0 for values in data["ratios"].values())
    assert isinstance(report["verdict"]["constant_foreground"]["holds"], bool)
    assert "ddp_sparse_growth_s" in report["verdict"]["constant_size"]
    text = (tmp_path / "persons.md").read_text()
    assert text.startswith("# Seconds per image vs persons per image")
    assert "WARNING" in text and "## Verdict" in text
    assert (tmp_path / "persons.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
