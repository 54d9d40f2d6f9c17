import pytest
import torch

from model.device import autocast, select_device


def test_auto_picks_cuda_only_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_cuda_requested_without_cuda_is_refused():
    with pytest.raises(ValueError, match="CUDA is not available"):
        select_device("cuda")


def test_autocast_leaves_cpu_in_fp32():
    with autocast(torch.device("cpu"), "bf16"):
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", ["meta", "gpu", "cuda:x", ""])
def test_unknown_device_is_refused(name):
    with pytest.raises(ValueError, match="unsupported device"):
        select_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_index_past_the_devices_is_refused():
    with pytest.raises(ValueError, match="CUDA device"):
        select_device(f"cuda:{torch.cuda.device_count()}")
