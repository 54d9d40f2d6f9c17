"""GPS AP/AR and mask AP on toy scenes written as DensePose-COCO, with a toy surface."""

import contextlib
import io
import itertools
import json

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from toy_scenes import render_toy_scene
from toy_surface import toy_geodesics

from model.data.coco import CATEGORIES, person_annotations
from model.data.dense import write_dense
from model.data.labels import as_result
from model.data.loader import DensePoseCocoDataset
from model.evaluation.evaluator import DensePoseEvaluator, evaluate
from model.evaluation.gps import PAPER_KAPPA
from model.structures import DensePoseResult
from service.cli import main

HEIGHT, WIDTH = 96, 128
SCENES = [(1, 3), (2, 2), (3, 0), (4, 3)]
"""(seed, persons) of the toy images; the third has nobody."""


def write_toy_dataset(root):
    """Toy scenes as a ``ddp synth``-style directory: images, dense maps, annotations."""
    images, annotations = [], []
    for image_id, (seed, persons) in enumerate(SCENES, start=1):
        scene = render_toy_scene(seed, height=HEIGHT, width=WIDTH, num_people=persons)
        parts = scene.parts.numpy()
        uv = np.ascontiguousarray(scene.uv.numpy().transpose(1, 2, 0))
        instance = (scene.instances.numpy() + 1).astype(np.uint8)
        rgb = (scene.image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "dense").mkdir(exist_ok=True)
        cv2.imwrite(str(root / f"images/{image_id}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        write_dense(root / f"dense/{image_id}.npz", parts, uv, instance)
        images.append({"id": image_id, "file_name": f"images/{image_id}.jpg", "height": HEIGHT,
                       "width": WIDTH, "dense_file": f"dense/{image_id}.npz"})  # fmt: skip
        rng = np.random.default_rng(image_id)
        for a in person_annotations(parts, uv, instance, rng, num_points=40, min_pixels=150):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **a})
    data = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (root / "annotations.json").write_text(json.dumps(data))
    return DensePoseCocoDataset(root / "annotations.json")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def geodesics():
    return toy_geodesics()


def truth_as_prediction(dataset):
    labels = [dataset.dense_labels(i) for i in range(len(dataset))]
    return [as_result(parts, uv, instance) for parts, uv, instance in labels]


def with_uv_noise(result, sigma, seed=0):
    rng = np.random.default_rng(seed)
    uv = []
    for parts, crop in zip(result.parts, result.uv, strict=True):
        noise = torch.from_numpy(rng.standard_normal(crop.shape).astype(np.float32))
        uv.append(((crop + sigma * noise).clamp(0, 1)) * (parts > 0))
    return DensePoseResult(result.boxes_xyxy, result.scores, result.masks, result.parts, uv)


def with_parts_swapped(result, fraction, seed=0):
    rng = np.random.default_rng(seed)
    parts = []
    for crop in result.parts:
        swap = torch.from_numpy(rng.uniform(size=crop.shape) < fraction) & (crop > 0)
        parts.append(torch.where(swap, crop % 24 + 1, crop).to(torch.uint8))
    return DensePoseResult(result.boxes_xyxy, result.scores, result.masks, parts, result.uv)


def test_ground_truth_as_prediction_scores_100(dataset, geodesics):
    truth = truth_as_prediction(dataset)
    assert sum(len(r) for r in truth) > sum(p for _, p in SCENES) - 2  # most people visible
    metrics = evaluate(truth, dataset, geodesics=geodesics)
    assert set(metrics) == {
        "gps_ap", "gps_ap50", "gps_ap75", "gps_apm", "gps_apl",
        "gps_ar", "gps_ar50", "gps_ar75", "gps_arm", "gps_arl",
        "mask_ap", "mask_ap50", "mask_ap75",
    }  # fmt: skip
    for name in ("gps_ap", "gps_ap50", "gps_ap75", "gps_ar", "mask_ap", "mask_ap50"):
        assert metrics[name] == pytest.approx(100.0), name
    assert np.isnan(metrics["gps_apl"])  # no person in the toy images is above 96² px


def test_gps_ap_falls_as_uv_noise_grows(dataset, geodesics):
    truth = truth_as_prediction(dataset)
    scores = [
        evaluate([with_uv_noise(r, sigma) for r in truth], dataset, geodesics=geodesics)["gps_ap"]
        for sigma in (0.0, 0.1, 0.2, 0.4, 0.8)
    ]
    assert scores[0] == pytest.approx(100.0)
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(scores)), scores
    assert scores[-1] < 50, scores


def test_gps_ap_falls_as_parts_are_swapped_and_masks_do_not_care(dataset, geodesics):
    truth = truth_as_prediction(dataset)
    results = [
        evaluate([with_parts_swapped(r, f) for r in truth], dataset, geodesics=geodesics)
        for f in (0.0, 0.1, 0.3, 0.6)
    ]
    scores = [m["gps_ap"] for m in results]
    assert all(a > b for a, b in itertools.pairwise(scores)), scores
    assert all(m["mask_ap"] == pytest.approx(100.0) for m in results)


def test_paper_kappa_is_a_different_scale(dataset, geodesics):
    noisy = [with_uv_noise(r, 0.3) for r in truth_as_prediction(dataset)]
    per_part = evaluate(noisy, dataset, geodesics=geodesics)["gps_ap"]
    paper = evaluate(noisy, dataset, geodesics=geodesics, kappa=PAPER_KAPPA)["gps_ap"]
    assert paper != pytest.approx(per_part)


def test_a_missed_person_lowers_recall_and_a_false_positive_precision(dataset, geodesics):
    truth = truth_as_prediction(dataset)
    missed = [truth[0].select(range(1, len(truth[0]))), *truth[1:]]
    metrics = evaluate(missed, dataset, geodesics=geodesics)
    assert metrics["gps_ar"] < 100 and metrics["mask_ap"] < 100
    assert metrics["gps_ap"] < 100  # recall never reaches 1
    # a confident detection on the image with nobody is a false positive (no crash either)
    ghost = truth[0].select([0])
    ghost.scores = torch.tensor([2.0])
    extra = [*truth[:2], ghost, *truth[3:]]
    metrics = evaluate(extra, dataset, geodesics=geodesics)
    assert metrics["gps_ap"] < 100 and metrics["mask_ap"] < 100
    assert metrics["gps_ar"] == pytest.approx(100.0)


def test_empty_predictions_and_empty_sets_give_well_formed_answers(dataset, geodesics):
    empty = [DensePoseResult.empty(HEIGHT, WIDTH) for _ in range(len(dataset))]
    metrics = evaluate(empty, dataset, geodesics=geodesics)
    assert metrics["gps_ap"] == 0 and metrics["gps_ar"] == 0 and metrics["mask_ap"] == 0
    nobody = DensePoseEvaluator(dataset, geodesics)
    nobody.add(2, truth_as_prediction(dataset)[0])  # the image without people
    assert all(np.isnan(v) for v in nobody.summary().values())
    assert all(np.isnan(v) for v in DensePoseEvaluator(dataset, geodesics).summary().values())
    with pytest.raises(ValueError, match="masks"):
        nobody.add(0, DensePoseResult.empty(HEIGHT + 1, WIDTH))


def test_mask_ap_matches_pycocotools_segm(dataset, geodesics, tmp_path):
    rng = np.random.default_rng(0)
    predictions, records = [], []
    for index, result in enumerate(truth_as_prediction(dataset)):
        masks = result.masks.numpy().copy()
        for mask in masks:  # damage some masks by a random amount
            mask[:, : rng.integers(0, WIDTH // 3)] = False
        keep = [i for i in range(len(result)) if rng.uniform() < 0.8]
        scores = torch.from_numpy(rng.uniform(size=len(result)).astype(np.float32))
        result = DensePoseResult(result.boxes_xyxy, scores, torch.from_numpy(masks),
                                 result.parts, result.uv).select(keep)  # fmt: skip
        predictions.append(result)
        for mask, score in zip(result.masks.numpy(), result.scores.tolist(), strict=True):
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            records.append({"image_id": dataset.images[index]["id"], "category_id": 1,
                            "segmentation": rle, "score": score})  # fmt: skip
    ours = evaluate(predictions, dataset, geodesics=geodesics)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(dataset.root / "annotations.json"))
        reference = COCOeval(truth, truth.loadRes(records), iouType="segm")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    assert 20 < ours["mask_ap"] < 95
    for name, stat in (("mask_ap", 0), ("mask_ap50", 1), ("mask_ap75", 2)):
        assert ours[name] == pytest.approx(100 * reference.stats[stat], abs=1e-9), name


def test_eval_command_runs_the_predictor_and_writes_the_metrics(
    dataset, geodesics, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("model.evaluation.geodesic.load_body_geodesics", lambda: geodesics)
    out = tmp_path / "metrics.json"
    data = str(dataset.root)
    argv = ["eval", "--data", data, "--untrained", "tiny", "--device", "cpu", "--limit", "3"]
    assert main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["images"] == 3 and report["network"] == "untrained tiny"
    for name in ("gps_ap", "gps_ap50", "gps_ar", "gps_apm", "mask_ap", "mask_ap75"):
        assert report[name] is None or 0 <= report[name] <= 100, name
    table = capsys.readouterr().out.splitlines()
    assert "AP50" in table[0] and table[1].startswith("gps") and table[2].startswith("mask")
    with pytest.raises(SystemExit, match="no weights"):
        main(["eval", "--data", data, "--weights", str(tmp_path / "none.safetensors")])
    with pytest.raises(SystemExit, match=r"annotations\.json"):
        main(["eval", "--data", str(tmp_path), "--untrained", "tiny"])
