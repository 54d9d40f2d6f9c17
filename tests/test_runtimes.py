"""The runtimes behind one interface: chosen by ``DDP_RUNTIME`` in the service and
``--runtime`` in the CLI, each end to end through ``/densepose`` and ``ddp predict`` against
eager PyTorch; the ONNX Runtime providers on CUDA (written, untested: no GPU here).

The network is ``tests/test_export.py``'s ``persons_network``; its exports are read from the
session's export cache (made there by whichever test needs them first).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import ValidationError
from test_export import EXPORTED_RUNTIMES, export_root, persons_network, toy_images

from model.checkpoint import save_checkpoint
from model.config import tiny_config
from model.export.formats import EXPORT_FORMATS
from model.inference.predictor import Predictor
from model.network.ddp import build_ddp
from model.outputs.npz import read_npz
from model.runtimes.names import RUNTIME_NAMES, TORCH_RUNTIMES
from model.runtimes.onnxruntime_backend import execution_providers, tensorrt_profile
from model.runtimes.openvino_backend import OpenVinoRuntime
from model.runtimes.selection import EXPORT_FORMATS as RUNTIME_FORMATS
from model.runtimes.selection import load_runtime
from service.app import create_app
from service.settings import Settings
from service.testing import encode


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, config = persons_network()
    return save_checkpoint(model, config, tmp_path_factory.mktemp("net") / "net.safetensors")


@pytest.fixture
def export_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """``$DDP_CACHE_DIR`` at the session's cache, whose ``exports/`` test_export.py shares."""
    monkeypatch.setenv("DDP_CACHE_DIR", str(export_root(tmp_path_factory).parent))


@contextmanager
def _serve(weights: Path, runtime: str) -> Iterator[TestClient]:
    """The app on ``weights`` with ``runtime``, once ready (an export may be loaded first)."""
    settings = Settings(weights=weights, runtime=runtime, max_wait_ms=0)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 600
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/healthz").json()
            time.sleep(0.1)
        yield client


def _answer(client: TestClient, image: np.ndarray) -> dict[str, np.ndarray]:
    response = client.post(
        "/densepose?format=npz", files={"file": ("scene.png", encode(image), "image/png")}
    )
    assert response.status_code == 200, response.text
    return read_npz(response.content)


def _assert_same_answer(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> None:
    """Same persons (boxes within 1e-3 relative, scores within 0.5 %: see test_export.py), part
    labels equal on >= 99.9 % of the labelled pixels, U and V within 2e-3 where they agree
    (1e-3 plus the NPZ's float16 rounding)."""
    np.testing.assert_allclose(actual["person_box_xyxy"], expected["person_box_xyxy"], rtol=1e-3)
    np.testing.assert_allclose(actual["person_score"], expected["person_score"], rtol=5e-3)
    labelled = (expected["parts"] > 0) | (actual["parts"] > 0)
    same = (expected["parts"] == actual["parts"]) & labelled
    assert same.sum() >= 0.999 * labelled.sum()
    agree = same & (expected["parts"] > 0)
    for key in ("u", "v"):
        difference = actual[key].astype(np.float32) - expected[key].astype(np.float32)
        assert np.abs(difference[agree]).max(initial=0.0) <= 2e-3


def test_every_runtime_has_a_name_and_every_export_a_runtime() -> None:
    names = (*TORCH_RUNTIMES, "onnxruntime", "onnxruntime-int8", "openvino")
    assert names == RUNTIME_NAMES
    assert set(RUNTIME_FORMATS) == set(RUNTIME_NAMES) - set(TORCH_RUNTIMES)
    assert set(RUNTIME_FORMATS.values()) == set(EXPORT_FORMATS)


def test_an_unknown_runtime_is_refused_by_the_settings_and_the_loader() -> None:
    with pytest.raises(ValidationError, match="runtime"):
        Settings(runtime="tensorflow")  # type: ignore[arg-type]
    predictor = Predictor(build_ddp(tiny_config()), tiny_config(), torch.device("cpu"))
    with pytest.raises(ValueError, match="runtime must be one of"):
        load_runtime("tensorflow", predictor)  # type: ignore[arg-type]


def test_the_torch_runtime_is_the_eager_network() -> None:
    model = build_ddp(tiny_config()).eval()
    predictor = Predictor(model, tiny_config(), torch.device("cpu"))
    runtime = load_runtime("torch", predictor)
    assert runtime.name == "torch" and "torch" in runtime.description
    images, sizes = torch.rand(1, 3, 128, 160), torch.tensor([[128, 160]])
    with torch.inference_mode():
        assert torch.equal(runtime(images, sizes).iuv_logits, model(images, sizes).iuv_logits)


@pytest.mark.parametrize("runtime", EXPORTED_RUNTIMES)
def test_the_service_runs_the_runtime_it_is_given(
    weights: Path, runtime: str, export_cache: None
) -> None:
    images = list(toy_images().values())
    with _serve(weights, "torch") as client:
        expected = [_answer(client, image) for image in images]
        assert client.get("/v1/model").json()["runtime"] == "torch"
    with _serve(weights, runtime) as client:
        info = client.get("/v1/model").json()
        assert info["runtime"] == runtime and info["runtime_detail"].startswith(runtime)
        actual = [_answer(client, image) for image in images]
    assert min(len(answer["person_score"]) for answer in expected) >= 2
    for one, other in zip(expected, actual, strict=True):
        _assert_same_answer(one, other)


@pytest.mark.parametrize("runtime", EXPORTED_RUNTIMES)
def test_ddp_predict_runs_the_runtime_it_is_given(
    weights: Path, runtime: str, tmp_path: Path, export_cache: None
) -> None:
    from service.cli import main

    image = tmp_path / "scene.png"
    image.write_bytes(encode(toy_images()["3 people"]))
    summaries = {}
    for name in ("torch", runtime):
        out = tmp_path / name
        args = ["predict", str(image), "--out", str(out), "--weights", str(weights)]
        assert main([*args, "--device", "cpu", "--runtime", name, "--formats", "json,npz"]) == 0
        summaries[name] = json.loads((out / "scene.json").read_text())
    _assert_same_answer(
        read_npz(tmp_path / "torch" / "scene.npz"), read_npz(tmp_path / runtime / "scene.npz")
    )
    persons = [summary["persons"] for summary in summaries.values()]
    assert len(persons[0]) == len(persons[1]) >= 2
    for one, other in zip(*persons, strict=True):
        np.testing.assert_allclose(other["box_xyxy"], one["box_xyxy"], rtol=1e-3, atol=0.02)


def test_openvino_refuses_cuda_before_loading_anything(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runs on the CPU"):
        OpenVinoRuntime(tmp_path / "none.xml", device=torch.device("cuda"), threads=1)


def test_onnxruntime_on_the_cpu_asks_for_the_cpu_provider_only() -> None:
    config = tiny_config().input
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert execution_providers(torch.device("cpu"), "fp32", config, available) == [
        "CPUExecutionProvider"
    ]


def test_onnxruntime_on_cuda_asks_for_tensorrt_then_cuda_of_those_installed() -> None:
    # Written for CUDA machines, untested on one (none here): what it asks ONNX Runtime for.
    config = tiny_config().input
    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = execution_providers(torch.device("cuda:1"), "fp16", config, every)
    names = [p if isinstance(p, str) else p[0] for p in providers]
    assert names == every
    assert isinstance(providers[0], tuple)
    tensorrt = providers[0][1]
    assert tensorrt["device_id"] == "1" and tensorrt["trt_fp16_enable"] == "True"
    assert tensorrt["trt_profile_opt_shapes"] == "images:1x3x128x160,image_sizes:1x2"
    assert tensorrt_profile(config)["trt_profile_max_shapes"].startswith("images:8x3x160x160")
    cpu_build = execution_providers(torch.device("cuda"), "fp32", config, every[-1:])
    assert cpu_build == ["CPUExecutionProvider"]
