"""Device choice (CUDA when present, else the CPU) and mixed precision on CUDA."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

Precision = Literal["fp32", "fp16", "bf16"]
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def select_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` if available else ``cpu``; an explicit CUDA device must exist.

    Raises:
        ValueError: not ``auto``, ``cpu`` or ``cuda[:N]``, or a CUDA device that is not there.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}: use auto, cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} requested but CUDA is not available "
            f"(torch {torch.__version__}): use cpu or auto"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    return device


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """fp16/bf16 autocast on CUDA; fp32 (and anything on the CPU) runs unchanged."""
    if precision == "fp32" or device.type != "cuda":
        yield
        return
    if precision not in _AUTOCAST_DTYPES:
        raise ValueError(f"unknown precision {precision!r}: use fp32, fp16 or bf16")
    with torch.autocast(device_type="cuda", dtype=_AUTOCAST_DTYPES[precision]):
        yield
