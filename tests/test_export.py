"""The exported network (ONNX in ONNX Runtime, OpenVINO IR in OpenVINO) against eager PyTorch.

Two tiny networks, random (seed 0), each exported once per test session into the session's
temporary export cache (which tests/test_runtimes.py and tests/test_export_triton.py read
back): ``persons_network`` keeps every location as a candidate, with its FCOS heads' last
layers widened so that scores differ clearly from one location to the next (a near-uniform
random head leaves near-ties that float rounding breaks differently in each runtime): every
image has several persons. ``nobody_network`` is the untrained tiny network as it is, whose
classification prior (0.01) lies under the candidate threshold (0.05): no image has anyone,
the path of zero persons and zero active sites. A random network's detections do not follow
the people in a scene, so the scenes' persons do not either; the shipped default weights are
compared on the example image and on an image with nobody (slow: their export takes minutes).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_scenes import render_toy_scene

from model.checkpoint import save_checkpoint
from model.config import DDPConfig, tiny_config
from model.export.bundle import (
    CACHED_NETWORKS,
    MANIFEST_NAME,
    ExportManifest,
    cached_export,
    network_key,
    prune_exports,
    write_export,
)
from model.export.graph import OUTPUT_NAMES, ExportGraph
from model.inference.images import read_image_rgb
from model.inference.predictor import Predictor
from model.inference.preprocess import prepare_batch
from model.network.ddp import DDP, build_ddp
from model.paths import CHECKOUT, DEFAULT_WEIGHTS
from model.runtimes.names import RuntimeName
from model.runtimes.selection import load_runtime
from model.structures import DensePoseResult

EXAMPLE = CHECKOUT / "examples" / "synthetic_scene.jpg"
EXPORTED_RUNTIMES: tuple[RuntimeName, ...] = ("onnxruntime", "openvino")


def persons_network() -> tuple[DDP, DDPConfig]:
    """Tiny, seed 0: every location a candidate, at most 10 persons an image, Matrix NMS,
    heads widened (module docstring)."""
    config = tiny_config()
    instance = dataclasses.replace(
        config.instance,
        candidate_score_threshold=0.0,
        detection_score_threshold=0.1,
        max_detections=10,
        mask_nms="matrix",
    )
    config = config.replace(instance=instance)
    torch.manual_seed(0)
    model = build_ddp(config).eval()
    head = model.instance_branch.head
    with torch.no_grad():
        for layer in (head.cls_logits, head.centerness, head.controller):
            layer.weight.normal_(std=0.3)
    return model, config


def nobody_network() -> tuple[DDP, DDPConfig]:
    """The untrained tiny network (``--untrained tiny``): nobody in any image."""
    torch.manual_seed(0)
    return build_ddp(tiny_config()).eval(), tiny_config()


def export_root(factory: pytest.TempPathFactory) -> Path:
    """The session's export cache, shared with tests/test_runtimes.py."""
    return factory.getbasetemp() / "exports"


NETWORKS = {"persons": persons_network, "nobody": nobody_network}


@pytest.fixture(scope="module")
def predictors(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Predictor]:
    """(network, runtime) -> predictor: eager, and each exported runtime (exported into the
    session's cache on first use)."""
    root = export_root(tmp_path_factory)
    predictors: dict[tuple[str, str], Predictor] = {}
    for network, build in NETWORKS.items():
        model, config = build()
        eager = Predictor(model, config, torch.device("cpu"))
        predictors[network, "torch"] = eager
        for name in EXPORTED_RUNTIMES:
            runtime = load_runtime(name, eager, cache_root=root)
            predictors[network, name] = dataclasses.replace(eager, runtime=runtime)
    return predictors


def toy_images() -> dict[str, np.ndarray]:
    """Toy scenes of 0, 1 and 3 people (textured backgrounds) and a blank image."""
    images = {}
    for people in (0, 1, 3):
        scene = render_toy_scene(people + 10, height=112, width=144, num_people=people)
        rgb = (scene.image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        images[f"{people} people"] = rgb
    images["blank"] = np.zeros((120, 150, 3), dtype=np.uint8)
    return images


def person_maps(result: DensePoseResult, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Person ``index``'s parts (H, W) uint8 and U, V (2, H, W) over the whole image."""
    height, width = result.masks.shape[-2:]
    parts = torch.zeros(height, width, dtype=torch.uint8)
    uv = torch.zeros(2, height, width)
    x0, y0, x1, y1 = result.integer_boxes()[index].tolist()
    parts[y0:y1, x0:x1] = result.parts[index]
    uv[:, y0:y1, x0:x1] = result.uv[index]
    return parts, uv


def assert_same_persons(expected: DensePoseResult, actual: DensePoseResult) -> None:
    """Same detections (number, boxes within 1e-3 relative, scores within 0.5 %), part labels
    equal on at least 99.9 % of the person pixels (labelled by either), U and V within 1e-3
    where the labels agree, instance masks equal on at least 99.9 % of their pixels."""
    assert len(actual) == len(expected)
    torch.testing.assert_close(actual.boxes_xyxy, expected.boxes_xyxy, rtol=1e-3, atol=1e-3)
    # Matrix NMS decays scores by the overlaps of masks thresholded at 0.5: a pixel rounded
    # across the threshold moves a score by ~1e-3 of itself.
    torch.testing.assert_close(actual.scores, expected.scores, rtol=5e-3, atol=1e-5)
    person_pixels = agreeing = mask_pixels = mask_agreeing = 0
    for index in range(len(expected)):
        expected_parts, expected_uv = person_maps(expected, index)
        actual_parts, actual_uv = person_maps(actual, index)
        labelled = (expected_parts > 0) | (actual_parts > 0)
        same = (expected_parts == actual_parts) & labelled
        person_pixels += int(labelled.sum())
        agreeing += int(same.sum())
        both = same & (expected_parts > 0)
        if both.any():
            assert (actual_uv - expected_uv)[:, both].abs().max() <= 1e-3
        masks = expected.masks[index] | actual.masks[index]
        mask_pixels += int(masks.sum())
        mask_agreeing += int((expected.masks[index] == actual.masks[index])[masks].sum())
    assert agreeing >= 0.999 * person_pixels
    assert mask_agreeing >= 0.999 * mask_pixels


@pytest.mark.parametrize("network", NETWORKS)
def test_the_graph_in_pytorch_is_ddp_forward(network: str) -> None:
    # Before any export: the rewritten stages (batched detection, mask heads as matrix products,
    # Matrix NMS over the batch, the gather/GEMM/scatter IUV branch) compute what DDP does, on
    # a batch of two sizes, with persons in both images or in none.
    model, config = NETWORKS[network]()
    images = [torch.rand(3, 100, 140), torch.rand(3, 90, 150)]
    batch = prepare_batch(images, config.input)
    with torch.inference_mode():
        eager = model(batch.images, batch.image_sizes)
        outputs = ExportGraph(model)(batch.images, batch.image_sizes)
    graph = dict(zip(OUTPUT_NAMES, outputs, strict=True))
    dets = eager.detections
    if network == "persons":
        assert len(dets) > 2 and set(dets.image_index.tolist()) == {0, 1}
    else:
        assert len(dets) == 0 and not eager.active.any()
    assert torch.equal(graph["image_index"], dets.image_index)
    torch.testing.assert_close(graph["boxes_xyxy"], dets.boxes_xyxy)
    torch.testing.assert_close(graph["scores"], dets.scores)
    # A matrix product per layer instead of a grouped convolution sums in another order: the
    # float32 rounding differs by up to ~1e-4 (seen 8e-5 on an AMD EPYC), not the values.
    torch.testing.assert_close(graph["mask_logits"], dets.mask_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(graph["iuv_logits"], eager.iuv_logits, rtol=1e-4, atol=1e-4)
    assert torch.equal(graph["active"], eager.active)


def test_hard_mask_nms_has_no_exportable_form() -> None:
    config = tiny_config()
    config = config.replace(instance=dataclasses.replace(config.instance, mask_nms="hard"))
    with pytest.raises(ValueError, match="hard"):
        ExportGraph(build_ddp(config))


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("runtime", EXPORTED_RUNTIMES)
def test_exported_runtimes_match_eager_on_toy_scenes_and_a_blank_image(
    predictors: dict[tuple[str, str], Predictor], runtime: str, network: str
) -> None:
    counts = []
    for image in toy_images().values():
        [expected] = predictors[network, "torch"]([image])
        [actual] = predictors[network, runtime]([image])
        assert_same_persons(expected, actual)
        counts.append(len(expected))
    if network == "persons":
        assert min(counts) >= 2
    else:  # nobody: no person, no active site, in every image
        assert max(counts) == 0


@pytest.mark.parametrize("runtime", EXPORTED_RUNTIMES)
def test_exported_runtimes_match_eager_on_a_batch_of_two_sizes(
    predictors: dict[tuple[str, str], Predictor], runtime: str
) -> None:
    # One forward pass, padded to the larger image: dynamic batch, sizes, persons and sites.
    images = list(toy_images().values())[1:]
    expected = predictors["persons", "torch"](images)
    actual = predictors["persons", runtime](images)
    assert sum(len(result) for result in expected) >= 6
    for one, other in zip(expected, actual, strict=True):
        assert_same_persons(one, other)


def test_the_export_cache_is_keyed_by_the_network(
    predictors: dict[tuple[str, str], Predictor], tmp_path_factory: pytest.TempPathFactory
) -> None:
    model, config = persons_network()
    root = export_root(tmp_path_factory)
    directory = cached_export(model, config, "onnx", root=root)  # read back, not exported
    manifest = ExportManifest.read(directory)
    assert manifest.network_key == network_key(model, config)
    assert DDPConfig.from_dict(manifest.config) == config
    assert directory.parent.name == f"tiny_{manifest.network_key[:16]}"
    other, _ = nobody_network()  # other weights and config: other keys
    assert network_key(other, config) != manifest.network_key
    assert network_key(model, config.replace(name="renamed")) != manifest.network_key


def test_the_export_cache_keeps_the_networks_used_last(tmp_path: Path) -> None:
    model, config = persons_network()
    root = tmp_path / "exports"
    stale = []
    for age in range(CACHED_NETWORKS + 1):  # older networks' exports: oldest last
        folder = root / f"tiny_stale{age}" / "onnx"
        folder.mkdir(parents=True)
        (folder / MANIFEST_NAME).write_text("{}")
        os.utime(folder.parent, (1e9 - age, 1e9 - age))
        stale.append(folder.parent)
    directory = cached_export(model, config, "onnx", root=root)
    kept = {path.name for path in root.iterdir()}
    assert kept == {directory.parent.name, *(p.name for p in stale[: CACHED_NETWORKS - 1])}

    # Reading an export back marks its network used: it outlives newer ones.
    os.utime(directory.parent, (1.0, 1.0))
    assert cached_export(model, config, "onnx", root=root) == directory
    assert prune_exports(root, keep=1) == stale[: CACHED_NETWORKS - 1]
    assert [path.name for path in root.iterdir()] == [directory.parent.name]


def test_cli_export_copies_the_cached_export_of_the_weights(
    predictors: dict[tuple[str, str], Predictor],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from service.cli import main

    # The checkpoint holds the same network, so its key finds the session's cached export.
    monkeypatch.setenv("DDP_CACHE_DIR", str(export_root(tmp_path_factory).parent))
    model, config = persons_network()
    weights = save_checkpoint(model, config, tmp_path / "net.safetensors")
    out = tmp_path / "openvino"
    args = ["export", "--weights", str(weights), "--format", "openvino", "--out", str(out)]
    assert main(args) == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["format"] == "openvino" and manifest["output_names"] == list(OUTPUT_NAMES)
    assert (out / "ddp.xml").is_file() and (out / "ddp.bin").stat().st_size > 1_000_000
    assert "ddp.xml" in capsys.readouterr().err


def test_cli_export_without_weights_says_what_to_pass(tmp_path: Path) -> None:
    from service.cli import main

    missing = tmp_path / "none.safetensors"
    with pytest.raises(SystemExit, match="--weights PATH"):
        main(["export", "--weights", str(missing), "--format", "onnx", "--out", str(tmp_path)])


def _example_scenes() -> dict[str, np.ndarray]:
    """The example image (two people, one on each side), its left half (one), the two side by
    side (four) and a blank image of its size (nobody)."""
    example = read_image_rgb(EXAMPLE)
    width = example.shape[1]
    return {
        "example": example,
        "left half": np.ascontiguousarray(example[:, : width // 2]),
        "twice": np.concatenate([example, example], axis=1),
        "blank": np.zeros_like(example),
    }


def _results(predictor: Predictor, images: Sequence[np.ndarray]) -> list[DensePoseResult]:
    return [predictor([image])[0] for image in images]


@pytest.mark.slow
@pytest.mark.parametrize("runtime", EXPORTED_RUNTIMES)
def test_shipped_weights_exported_match_eager_on_the_example(
    runtime: RuntimeName, tmp_path_factory: pytest.TempPathFactory
) -> None:
    eager = Predictor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu")
    root = export_root(tmp_path_factory)
    exported = dataclasses.replace(eager, runtime=load_runtime(runtime, eager, cache_root=root))
    scenes = _example_scenes()
    expected = _results(eager, list(scenes.values()))
    actual = _results(exported, list(scenes.values()))
    counts = dict(zip(scenes, (len(result) for result in expected), strict=True))
    assert counts["example"] >= 2 and counts["twice"] > counts["example"]
    assert counts["left half"] >= 1 and counts["blank"] == 0
    for one, other in zip(expected, actual, strict=True):
        assert_same_persons(one, other)


def test_write_export_rejects_an_unknown_format(tmp_path: Path) -> None:
    model, config = nobody_network()
    with pytest.raises(ValueError, match="export format"):
        write_export(model, config, "tflite", tmp_path)  # type: ignore[arg-type]
