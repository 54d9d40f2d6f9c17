"""``benchmarks.cpu_paths``: what a finished report records for ``auto`` and how it renders.
The benchmark itself runs minutes on the trained network; docs/runtimes.md has its command."""

from __future__ import annotations

from typing import Any

from benchmarks.cpu_paths import render_markdown, seconds_per_image, to_record
from model.device import CpuInfo
from model.runtimes.choice import choose_runtime

SHA = "12" * 32


def report() -> dict[str, Any]:
    def row(seconds: tuple[float, float], gps_ap: float | None) -> dict[str, Any]:
        return {
            "seconds": {"1": seconds[0], "8": seconds[1]},
            "found": {"1": 1, "8": 8},
            "accuracy": {"gps_ap": gps_ap, "gps_ap50": None, "mask_ap": 30.0},
            "startup": {"startup_s": 2.0, "rss_mib": 800.0, "peak_rss_mib": 900.0},
        }

    return {
        "environment": {
            "date": "2026-12-02T02:00:00+00:00",
            "command": "python -m benchmarks.cpu_paths",
            "cpu": "AMD EPYC",
            "cpu_capability": "AVX2",
            "logical_cpus": 2,
            "torch_threads": 2,
            "torch": "2.14.1",
            "load_average_start": [0.1],
            "load_average_end": [0.2],
            "bf16_unit": None,
        },
        "network": {"weights": "w.safetensors", "weights_sha256": SHA, "config": "default"},
        "settings": {
            "image_size": [384, 512],
            "person_fraction": 0.03,
            "seed": 0,
            "repeats": 10,
            "warmup": 2,
            "heldout": "/data/heldout-plain",
            "images": 200,
        },
        "scenes": {"1": {"foreground_fraction": 0.03}, "8": {"foreground_fraction": 0.24}},
        "runtimes": {
            "torch": row((0.6, 0.8), 21.5),
            "torch-bf16": {"unavailable": "not available on this CPU"},
            "onnxruntime": row((0.2, 0.4), 21.4),
            "onnxruntime-int8": row((0.1, 0.3), None),  # scoring found no ground truth
        },
        "auto": {"name": "onnxruntime", "reason": "2.33x torch"},
    }


def test_the_record_keeps_the_mean_of_the_scenes_and_the_scored_runtimes_only() -> None:
    record = to_record(report())
    assert record.weights_sha256 == SHA and record.heldout == "heldout-plain"
    assert set(record.accuracy) == {"torch", "onnxruntime"}
    (speed,) = record.speeds
    assert (speed.cpu, speed.capability, speed.threads, speed.date) == (
        "AMD EPYC", "AVX2", 2, "2026-12-02",
    )  # fmt: skip
    assert speed.seconds_per_image == {
        "torch": 0.7, "onnxruntime": seconds_per_image({"1": 0.2, "8": 0.4}),
        "onnxruntime-int8": 0.2,
    }  # fmt: skip
    epyc = CpuInfo(name="AMD EPYC", capability="AVX2", flags=frozenset())
    choice = choose_runtime(record, weights_sha256=SHA, cpu=epyc, unavailable={})
    assert choice.name == "onnxruntime"  # int8 is faster but unscored
    assert "onnxruntime-int8 (not scored)" in choice.reason


def test_the_markdown_has_a_row_per_runtime_and_says_why_one_did_not_run() -> None:
    text = render_markdown(report())
    assert text.startswith("# CPU runtimes side by side")
    assert "| `torch-bf16` | not run: not available on this CPU |" in text
    assert "| `onnxruntime` | 0.200 | 0.400 | 2.33 | 21.40 | -0.10 |" in text
    assert "**auto** on this CPU" in text and "`onnxruntime`: 2.33x torch" in text
