"""The Triton model repository of docker/triton/ checked offline: ``config.pbtxt`` parses as
Triton's ``ModelConfig`` (the proto that tritonclient ships) and declares exactly the inputs
and outputs of the exported ONNX graph: names, data types and dimensions. No Triton server
runs here."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from test_export import export_root, persons_network
from tritonclient.grpc import model_config_pb2

from model.export.bundle import MODEL_FILES, cached_export
from model.export.graph import INPUT_NAMES, OUTPUT_NAMES
from model.paths import CHECKOUT

REPOSITORY = CHECKOUT / "docker" / "triton"
ONNX_TO_TRITON: dict[int, str] = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
}


@pytest.fixture(scope="module")
def config() -> model_config_pb2.ModelConfig:
    parsed = model_config_pb2.ModelConfig()
    text_format.Parse((REPOSITORY / "ddp" / "config.pbtxt").read_text(), parsed)
    return parsed


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> onnx.GraphProto:
    model, network_config = persons_network()
    directory = cached_export(model, network_config, "onnx", root=export_root(tmp_path_factory))
    return onnx.load(str(directory / MODEL_FILES["onnx"]), load_external_data=False).graph


def _declared(tensors: list[onnx.ValueInfoProto]) -> list[tuple[str, str, list[int]]]:
    """(name, Triton data type, dims with -1 for every dynamic one) of ONNX graph tensors."""
    declared = []
    for tensor in tensors:
        kind = tensor.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim]
        declared.append((tensor.name, ONNX_TO_TRITON[kind.elem_type], dims))
    return declared


def _configured(tensors: list[model_config_pb2.ModelInput]) -> list[tuple[str, str, list[int]]]:
    return [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in tensors]


def test_the_repository_has_the_layout_triton_loads(config: model_config_pb2.ModelConfig) -> None:
    assert config.name == "ddp" == (REPOSITORY / "ddp").name
    assert config.platform == "onnxruntime_onnx"
    assert (REPOSITORY / "ddp" / "1").is_dir()  # version 1 holds model.onnx (README.md)
    assert "ddp/1/model.onnx" in (REPOSITORY / ".gitignore").read_text()
    # Outputs count persons over the whole batch, not per image: Triton must not batch.
    assert config.max_batch_size == 0


def test_config_declares_the_exported_graphs_inputs_and_outputs(
    config: model_config_pb2.ModelConfig, graph: onnx.GraphProto
) -> None:
    inputs, outputs = _configured(list(config.input)), _configured(list(config.output))
    assert [name for name, _, _ in inputs] == list(INPUT_NAMES)
    assert [name for name, _, _ in outputs] == list(OUTPUT_NAMES)
    assert inputs == _declared(list(graph.input))
    assert outputs == _declared(list(graph.output))


def test_the_readme_shows_how_to_fill_the_repository() -> None:
    readme = (REPOSITORY / "README.md").read_text()
    assert "ddp export --format onnx" in readme and "ddp/1/model.onnx" in readme
    assert Path(REPOSITORY / "ddp" / "config.pbtxt").is_file()
