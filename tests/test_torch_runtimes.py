"""The torch runtimes against eager fp32 on the tiny config (3 forced persons): channels-last
equal up to float rounding, bf16 only where the CPU has a bf16 unit (and then close, in
float32 outputs). ``torch-compile`` needs minutes of inductor compilation even for the tiny
network on 2 cores: it is compared with eager in ``benchmarks/cpu_paths.py`` (same persons,
accuracy on the held-out set), not here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.device import CpuInfo
from model.inference.predictor import Predictor
from model.runtimes import torch_backend
from model.runtimes.selection import load_runtime
from model.runtimes.torch_backend import TorchRuntime
from model.structures import DDPOutput
from service.testing import tiny_checkpoint

WITH_AMX = CpuInfo(name="Intel Xeon 8480", capability="AVX512", flags=frozenset({"amx_bf16"}))
WITHOUT = CpuInfo(name="AMD EPYC", capability="AVX2", flags=frozenset({"avx2"}))


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    weights = tiny_checkpoint(tmp_path_factory.mktemp("net") / "tiny.safetensors")
    return Predictor.from_checkpoint(weights, device="cpu")


def _run(forward: object, seed: int = 0) -> DDPOutput:
    torch.manual_seed(seed)
    images, sizes = torch.rand(1, 3, 128, 160), torch.tensor([[128, 160]])
    with torch.inference_mode():
        return forward(images, sizes)  # type: ignore[operator, no-any-return]


def _assert_close(actual: DDPOutput, expected: DDPOutput, *, rtol: float, atol: float) -> None:
    assert len(expected.detections) == 3  # the forced persons
    assert torch.equal(actual.detections.image_index, expected.detections.image_index)
    for name in ("boxes_xyxy", "scores", "mask_logits"):
        torch.testing.assert_close(
            getattr(actual.detections, name), getattr(expected.detections, name),
            rtol=rtol, atol=atol,
        )  # fmt: skip
    assert actual.active.float().mean() > 0
    assert (actual.active == expected.active).float().mean() >= 0.999
    both = actual.active & expected.active
    torch.testing.assert_close(
        actual.iuv_logits.permute(0, 2, 3, 1)[both], expected.iuv_logits.permute(0, 2, 3, 1)[both],
        rtol=rtol, atol=atol,
    )  # fmt: skip


def test_channels_last_equals_eager_and_leaves_the_model_as_it_was(predictor: Predictor) -> None:
    runtime = load_runtime("torch-channels-last", predictor)
    assert runtime.name == "torch-channels-last"
    assert runtime.description.endswith("(eager, channels-last)")
    _assert_close(_run(runtime), _run(predictor.model), rtol=1e-4, atol=1e-4)
    first_conv = next(m for m in predictor.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous()  # the predictor's own network stays NCHW


def test_bf16_is_refused_on_a_cpu_without_a_bf16_unit(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch_backend, "cpu_info", lambda: WITHOUT)
    with pytest.raises(ValueError, match=r"not available on this CPU \(AMD EPYC: no AMX"):
        TorchRuntime(predictor.model, "torch-bf16")
    assert "precision bf16 on CUDA" in (torch_backend.bf16_unavailable(torch.device("cuda")) or "")


def test_bf16_on_a_cpu_with_amx_runs_under_autocast_with_float32_outputs(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Emulated here (no AMX): what is checked is the autocast and the output dtypes.
    monkeypatch.setattr(torch_backend, "cpu_info", lambda: WITH_AMX)
    runtime = TorchRuntime(predictor.model, "torch-bf16")
    assert runtime.description.endswith("(eager, bf16 autocast on AMX)")
    output, eager = _run(runtime), _run(predictor.model)
    assert output.iuv_logits.dtype == output.detections.mask_logits.dtype == torch.float32
    assert not torch.equal(output.detections.mask_logits, eager.detections.mask_logits)
    torch.testing.assert_close(
        output.detections.boxes_xyxy, eager.detections.boxes_xyxy, rtol=0.05, atol=1.0
    )


def test_an_unknown_torch_runtime_is_refused(predictor: Predictor, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a torch runtime is one of"):
        TorchRuntime(predictor.model, "onnxruntime")
