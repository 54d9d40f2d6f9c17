"""Both benchmarks end to end on tiny inputs: they run, write their files, report positive
times. No speed assertions: this only keeps the scripts working."""

import argparse
import json

import pytest

from benchmarks import sparse_vs_dense, stages
from benchmarks.common import image_size


def test_stages_writes_a_report_per_config(tmp_path):
    stages.main(["--out", str(tmp_path), "--configs", "tiny", "--repeats", "1",
                 "--matmul-size", "128"])  # fmt: skip
    report = json.loads((tmp_path / "stages.json").read_text())
    assert {"environment", "stages", "results"} <= set(report)
    (result,) = report["results"]
    assert result["config"] == "tiny"
    assert set(result["median_s"]) == {*stages.STAGES, "total"}
    assert all(seconds > 0 for seconds in result["median_s"].values())
    assert abs(sum(result["share"].values()) - 1) < 1e-6
    assert 0.2 < result["foreground_fraction"] < 0.35
    assert result["matmul_gflops"] > 0 and set(result["gflops"]) == set(stages.STAGES)
    assert result["gflop"]["backbone_fpn"] > 0 and result["gflop"]["postprocess"] == 0
    assert result["of_matmul"]["backbone_fpn"] > 0
    assert (tmp_path / "stages.md").read_text().startswith("# Forward time by stage")
    assert (tmp_path / "stages.png").stat().st_size > 0


def test_sparse_vs_dense_times_every_backend_and_checks_agreement(tmp_path):
    sparse_vs_dense.main([
        "--out", str(tmp_path), "--configs", "tiny", "--sizes", "24x32",
        "--fractions", "0.25", "1.0", "--repeats", "1", "--matmul-size", "128",
    ])
    report = json.loads((tmp_path / "sparse_vs_dense.json").read_text())
    expected_keys = {"environment", "sparse_backends", "matmul", "expected", "rows", "verdict"}
    assert expected_keys <= set(report)
    assert report["matmul"]["gflops"] > 0
    backends = report["sparse_backends"]
    assert [row["target_fraction"] for row in report["rows"]] == [0.25, 1.0]
    for row in report["rows"]:
        assert set(row["seconds"]) == {*backends, "dense", "conv2d_floor"}
        assert all(seconds > 0 for seconds in row["seconds"].values())
        assert set(row["speedup"]) == set(row["speedup_vs_floor"]) == set(backends)
        assert isinstance(row["contended"], bool)
        for name in backends:
            assert row["agreement"][name]["rel_err"] < 1e-3
    assert report["rows"][1]["fraction"] == 1.0
    assert [v["fraction"] for v in report["verdict"]] == [report["rows"][0]["fraction"]]
    assert (tmp_path / "sparse_vs_dense.md").exists()
    assert (tmp_path / "sparse_vs_dense.png").stat().st_size > 0


def test_image_sizes_parse_height_first_and_refuse_bad_ones():
    assert image_size("96x128") == (96, 128)
    assert image_size("200X334") == (200, 334)
    for bad in ("96", "96x", "ax128", "0x128"):
        with pytest.raises(argparse.ArgumentTypeError):
            image_size(bad)
    with pytest.raises(argparse.ArgumentTypeError, match=">= 32"):
        image_size("16x128", minimum=32)


def test_sparse_vs_dense_sizes_default_to_each_configs_x_agg():
    args = sparse_vs_dense.parse_args(["--out", "x", "--configs", "default", "r50"])
    assert args.sizes == [(96, 128), (200, 334)]  # 1/4 of 384x512 and of 800x1333
