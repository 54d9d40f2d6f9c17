"""``benchmarks.persons``: the person sizes of its two series, its stage split, and the
benchmark end to end on a tiny random network (files written, numbers well-formed; no claims
about speed). The scenes themselves: ``tests/test_data_crowd.py``."""

from __future__ import annotations

import json
import time
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
    ModuleTimer,
    carve,
    person_fraction,
    scene_summary,
)
from benchmarks.persons import main as persons_main
from model.config import get_config
from model.data.crowd import Crowd

needs_anny = pytest.mark.skipif(find_spec("anny") is None, reason="needs the 'data' extra")
HEIGHT, WIDTH = 96, 128


def test_series_targets() -> None:
    assert person_fraction("constant_foreground", 4, foreground=0.08, person=0.01) == 0.02
    assert person_fraction("constant_size", 4, foreground=0.08, person=0.01) == 0.01
    with pytest.raises(ValueError, match="unknown series"):
        person_fraction("crowd", 4, foreground=0.08, person=0.01)


def test_scene_summary_of_two_persons_and_of_nobody() -> None:
    instance = np.zeros((10, 20), np.uint8)
    instance[0:4, 0:5], instance[2:10, 10:14] = 1, 2
    crowd = Crowd(
        image=np.zeros((10, 20, 3), np.uint8), instance=instance,
        boxes_xyxy=np.array([[0, 0, 5, 4], [10, 2, 14, 10]], np.float32),
        person_fractions=np.array([0.1, 0.16]), target_fraction=0.12,
        shrunk=np.array([False, True]),
    )  # fmt: skip
    summary = scene_summary(crowd)
    assert summary["persons"] == 2 and summary["shrunk_to_fit"] == 1
    assert summary["foreground_fraction"] == pytest.approx(0.26)
    assert summary["person_height_px"] == {"mean": 6.0, "min": 4.0, "max": 8.0}
    assert summary["person_fraction"] == pytest.approx({"mean": 0.13, "min": 0.1, "max": 0.16})
    nobody = Crowd(
        np.zeros((10, 20, 3), np.uint8), np.zeros((10, 20), np.uint8),
        np.zeros((0, 4), np.float32), np.zeros(0), 0.12, np.zeros(0, bool),
    )  # fmt: skip
    summary = scene_summary(nobody)
    assert summary["persons"] == 0 and summary["foreground_fraction"] == 0.0
    assert summary["person_fraction"] is None and summary["person_height_px"] is None


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


@pytest.mark.slow
@needs_anny
def test_bench_persons_end_to_end(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        persons_main([
            "--out", str(tmp_path), "--untrained", "tiny",
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
    threshold = get_config("tiny").instance.detection_score_threshold
    assert report["settings"]["detection_score"] == threshold
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
