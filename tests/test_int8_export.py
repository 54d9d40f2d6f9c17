"""The ``onnx-int8`` export (``model.export.quantize``) and the ``onnxruntime-int8`` runtime
on ``tests/test_export.py``'s tiny persons network: the convolutions' weights in int8 and
nothing else's, the best person as eager finds it, calibration images that must exist. Its accuracy
on a trained network is measured by ``benchmarks/cpu_paths.py``, not here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from test_export import export_root, persons_network, toy_images

from model.export.bundle import MODEL_FILES, cached_export, write_export
from model.export.quantize import calibration_images, default_calibration_dir
from model.inference.predictor import Predictor
from model.runtimes.onnxruntime_backend import OnnxRuntime


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, config = persons_network()
    onnx_dir = cached_export(model, config, "onnx", root=export_root(tmp_path_factory))
    out = tmp_path_factory.mktemp("int8")
    manifest = write_export(
        model, config, "onnx-int8", out, from_onnx=onnx_dir / MODEL_FILES["onnx"],
        calibration=list(toy_images().values()),
    )  # fmt: skip
    assert manifest.format == "onnx-int8"
    return out / manifest.model_file


def test_only_the_convolutions_weights_are_int8(int8_model: Path) -> None:
    import onnx

    graph = onnx.load(str(int8_model)).graph
    int8 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    producers = {output: node for node in graph.node for output in node.output}
    int8_weights = {
        node.output[0]
        for node in graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in int8
    }
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert convs and all(conv.input[1] in int8_weights for conv in convs)
    assert all(producers[conv.input[0]].op_type == "DequantizeLinear" for conv in convs)
    others = [node for node in graph.node if node.op_type != "Conv"]
    assert not any(set(node.input) & int8_weights for node in others)  # GEMMs stay float32


def test_int8_finds_the_persons_eager_finds(int8_model: Path) -> None:
    model, config = persons_network()
    eager = Predictor(model, config, torch.device("cpu"))
    runtime = OnnxRuntime(
        int8_model, device=torch.device("cpu"), precision="fp32", config=config.input, threads=1,
        name="onnxruntime-int8",
    )  # fmt: skip
    assert runtime.name == "onnxruntime-int8" and runtime.description.endswith(", int8 Conv)")
    int8 = dataclasses.replace(eager, runtime=runtime)
    image = toy_images()["3 people"]
    expected, actual = eager([image])[0].best(), int8([image])[0].best()
    assert len(expected) >= 2 and len(actual) >= 2
    # A random network's scores sit close together: int8 may add or drop persons near the
    # threshold and swap the order of the best two (AVX-512 VNNI CPUs do: 0.54/0.36 eager,
    # 0.42/0.54 int8), and its mask logits sit near 0. Its two best persons stay eager's two
    # best, in either order, with their masks.
    for index in range(2):
        offsets = (expected.boxes_xyxy[:2] - actual.boxes_xyxy[index]).abs().amax(dim=1)
        match = int(offsets.argmin())
        assert float(offsets[match]) <= 2.0, (actual.boxes_xyxy[:2], expected.boxes_xyxy[:2])
        assert (actual.masks[index] == expected.masks[match]).float().mean() >= 0.8


def test_int8_refuses_cuda_and_needs_calibration_images(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runs on the CPU"):
        OnnxRuntime(
            tmp_path / "none.onnx", device=torch.device("cuda"), precision="fp32",
            config=persons_network()[1].input, threads=1, name="onnxruntime-int8",
        )  # fmt: skip
    with pytest.raises(FileNotFoundError, match="calibrates on the images of"):
        calibration_images(tmp_path)
    (tmp_path / "images").mkdir()
    for index in range(3):
        path = tmp_path / "images" / f"{index}.png"
        from PIL import Image

        Image.fromarray(np.full((8, 8, 3), index, dtype=np.uint8)).save(path)
    assert [int(image[0, 0, 0]) for image in calibration_images(tmp_path, count=2)] == [0, 1]
    assert default_calibration_dir().name.startswith("calibration-world-seed2-n100-")
