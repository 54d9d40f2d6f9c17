"""``ddp recipe`` end to end at smoke size: render train, held-out and validation sets, train,
choose detection settings, score, export; then a second run reuses everything (slow: renders
with the anny body model). The ``world`` engine runs on a pool of stand-in photos."""

import dataclasses
import json
from importlib.util import find_spec

import cv2
import numpy as np
import pytest

from benchmarks.ablation import main as ablation_main
from benchmarks.results import main as results_main
from model.checkpoint import load_checkpoint
from model.config import ABLATIONS, ablate, tiny_config
from model.data.backgrounds import BackgroundPool
from model.training import recipe
from service.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_spec("anny") is None, reason="needs the 'data' extra (anny)"),
]


@pytest.fixture
def stand_in_photos(tmp_path, monkeypatch):
    """The training pool replaced by three noise "photographs" (the real ones are Debian
    wallpapers, not installed in CI)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = tmp_path / "pool" / f"photo{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
        paths.append(path)
    monkeypatch.setattr(
        recipe, "training_backgrounds", lambda count: BackgroundPool.from_paths(paths[:count])
    )


def test_recipe_renders_trains_scores_and_exports_then_resumes(tmp_path, capsys, stand_in_photos):
    data_root, out, export = tmp_path / "data", tmp_path / "run", tmp_path / "w" / "ddp.safetensors"
    args = [
        "recipe", "--config", "tiny", "--out", str(out), "--steps", "2", "--warmup", "1",
        "--batch-size", "2", "--workers", "0", "--device", "cpu", "--train-images", "4",
        "--val-images", "2", "--calibration-images", "2", "--engine", "world",
        "--data-root", str(data_root), "--export", str(export), "--background-photos", "3",
    ]  # fmt: skip
    assert main(args) == 0
    train_dir = data_root / "train-world-seed0-n4-photos3-384x512"
    val_dir = data_root / "heldout-plain-seed1-n2-384x512"
    calibration_dir = data_root / "calibration-world-seed2-n2-photos3-384x512"
    for directory, images in ((train_dir, 4), (val_dir, 2), (calibration_dir, 2)):
        assert len(json.loads((directory / "annotations.json").read_text())["images"]) == images
    report = json.loads((out / "eval.json").read_text())
    assert report["images"] == 2 and report["data"] == str(val_dir)
    assert set(report) >= {"gps_ap", "gps_ap50", "gps_ar", "mask_ap", "seconds_per_image"}
    _, config = load_checkpoint(export)
    # Only the detection settings chosen on the validation set differ from the config trained.
    chosen = config.instance
    assert chosen.mask_nms in ("none", "hard", "matrix")
    assert 0.3 <= chosen.detection_score_threshold <= 0.8
    unchanged = dataclasses.replace(
        chosen,
        mask_nms="none",
        mask_nms_threshold=0.5,
        detection_score_threshold=tiny_config().instance.detection_score_threshold,
    )
    assert config.replace(instance=unchanged) == tiny_config()
    assert "F1" in (out / "calibration.md").read_text()
    assert export.with_suffix(".json").is_file()
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
        "--seeds", "3", "4", "--out", str(out), "--engine", "plain", "--calibration-images", "0",
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


def test_a_layout_of_people_applies_to_training_and_validation_not_to_the_held_out_set(tmp_path):
    from model.training.settings import DataSettings

    data = DataSettings(
        train_images=3, val_images=1, calibration_images=2, engine="plain", workers=0,
        data_root=tmp_path, persons=(2, 2), person_heights=(0.5, 0.55),
    )  # fmt: skip
    train = recipe.ensure_dataset(data.training_split())
    calibration = recipe.calibration_set(data)
    held_out = recipe.held_out_set(data)
    assert train.name == "train-plain-seed0-n3-persons2-2-heights0.5-0.55-384x512"
    assert calibration.name == "calibration-plain-seed2-n2-persons2-2-heights0.5-0.55-384x512"
    assert held_out.name == "heldout-plain-seed1-n1-384x512"
    for directory in (train, calibration):
        coco = json.loads((directory / "annotations.json").read_text())
        per_image = [
            sum(a["image_id"] == image["id"] for a in coco["annotations"])
            for image in coco["images"]
        ]
        assert max(per_image) == 2 and min(per_image) >= 1, per_image
        heights = [a["bbox"][3] / 384 for a in coco["annotations"]]
        assert max(heights) < 0.8, heights  # the default layout reaches 2 image heights
    with pytest.raises(ValueError, match="person_heights"):
        DataSettings(person_heights=(0.0, 1.0))
