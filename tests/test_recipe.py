"""``ddp recipe`` end to end at smoke size: render train + held-out sets, train, score, export;
then a second run reuses everything (slow: renders with the anny body model)."""

import json
from importlib.util import find_spec

import cv2
import pytest

from benchmarks.ablation import main as ablation_main
from benchmarks.results import main as results_main
from model.checkpoint import load_checkpoint
from model.cli import main
from model.config import ABLATIONS, ablate, tiny_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_spec("anny") is None, reason="needs the 'data' extra (anny)"),
]


def test_recipe_renders_trains_scores_and_exports_then_resumes(tmp_path, capsys):
    data_root, out, export = tmp_path / "data", tmp_path / "run", tmp_path / "w" / "ddp.safetensors"
    args = [
        "recipe", "--config", "tiny", "--out", str(out), "--steps", "2", "--warmup", "1",
        "--batch-size", "2", "--workers", "0", "--device", "cpu", "--train-images", "4",
        "--val-images", "2", "--data-root", str(data_root), "--export", str(export),
    ]  # fmt: skip
    assert main(args) == 0
    train_dir = data_root / "train-seed0-n4-384x512"
    val_dir = data_root / "val-seed1-n2-384x512"
    for directory, images in ((train_dir, 4), (val_dir, 2)):
        assert len(json.loads((directory / "annotations.json").read_text())["images"]) == images
    report = json.loads((out / "eval.json").read_text())
    assert report["images"] == 2 and report["data"] == str(val_dir)
    assert set(report) >= {"gps_ap", "gps_ap50", "gps_ar", "mask_ap", "seconds_per_image"}
    _, config = load_checkpoint(export)
    assert config == tiny_config() and export.with_suffix(".json").is_file()
    assert "GPS" in capsys.readouterr().out.upper()

    # docs/results.md's Table 1 and Fig. 6 from the exported weights and the held-out set.
    figures = tmp_path / "results"
    results_args = ["--weights", str(export), "--data", str(val_dir), "--out", str(figures)]
    assert results_main([*results_args, "--threads", "1", "--figure-images", "2"]) == 0
    table = json.loads((figures / "table1.json").read_text())
    assert table["metrics"]["images"] == 2 and "gps_ap" in table["metrics"]
    assert "| tiny (ddp.safetensors) |" in (figures / "table1.md").read_text()
    figure = cv2.imread(str(figures / "fig6.jpg"))
    assert figure.shape == (2 * 384, 3 * 512, 3)

    # A longer schedule on the same --out resumes from step 2 and reuses the rendered sets.
    stamps = {p: p.stat().st_mtime_ns for p in (train_dir / "annotations.json",)}
    assert main([*args[:6], "3", *args[7:]]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_ablations_remove_the_papers_components_cumulatively():
    full = tiny_config()
    assert ablate(full, "full") == full
    no_ls = ablate(full, "no-ls")
    assert no_ls.loss.smoothness_weight == 0 and no_ls.iuv == full.iuv
    no_ian = ablate(full, "no-ls-ian")
    assert no_ian.iuv.norm == "image" and no_ian.iuv.suppress_background
    dense = ablate(full, "no-ls-ian-sparse")
    assert dense.iuv.norm == "image" and not dense.iuv.suppress_background
    assert dense.loss.smoothness_weight == 0 and dense.name == "tiny-no-ls-ian-sparse"
    with pytest.raises(ValueError, match="unknown ablation"):
        ablate(full, "no-everything")


def test_ablation_table_trains_every_variant_and_the_extra_seed(tmp_path):
    out = tmp_path / "docs"
    args = [
        "--config", "tiny", "--steps", "1", "--warmup", "1", "--batch-size", "2",
        "--workers", "0", "--threads", "1", "--train-images", "2", "--val-images", "1",
        "--data-root", str(tmp_path / "data"), "--runs", str(tmp_path / "runs"),
        "--seeds", "3", "4", "--out", str(out),
    ]  # fmt: skip
    assert ablation_main(args) == 0
    report = json.loads((out / "ablation.json").read_text())
    rows = [(row["variant"], row["seed"]) for row in report["rows"]]
    assert rows == [(variant, 3) for variant in ABLATIONS] + [("full", 4)]
    assert all(row["images"] == 1 and row["seconds_per_image"] > 0 for row in report["rows"])
    dense = load_checkpoint(
        tmp_path / "runs" / "no-ls-ian-sparse-seed3" / "step_0000001.safetensors"
    )
    assert not dense[1].iuv.suppress_background
    assert (out / "ablation.md").read_text().count("\n| ") == 5 and (out / "ablation.png").is_file()
