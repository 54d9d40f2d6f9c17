"""Device choice (CUDA when present, else the CPU), mixed precision on CUDA, and what the CPU
is (its name and the vector units the CPU runtimes depend on)."""

from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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


BF16_FLAGS = {"amx_bf16": "AMX", "avx512_bf16": "AVX-512-BF16"}
"""/proc/cpuinfo flags of the units that run bf16 matrix products natively, best first."""


@dataclass(frozen=True)
class CpuInfo:
    """What the CPU is: the runtimes' recorded speeds are keyed by it."""

    name: str
    """``model name`` of /proc/cpuinfo, e.g. ``AMD EPYC 7B13`` (``platform.processor()``
    elsewhere)."""
    capability: str
    """The vector ISA torch dispatches to (``torch.backends.cpu.get_cpu_capability()``):
    ``AVX2``, ``AVX512``, ..."""
    flags: frozenset[str]
    """The /proc/cpuinfo flags (empty where there is none)."""

    @property
    def bf16_unit(self) -> str | None:
        """``AMX`` or ``AVX-512-BF16`` when the CPU has one (bf16 autocast pays only there),
        else None."""
        return next((unit for flag, unit in BF16_FLAGS.items() if flag in self.flags), None)


def read_cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """This machine's ``CpuInfo`` from ``cpuinfo`` (its first processor)."""
    name, flags = platform.processor() or "unknown", frozenset[str]()
    if cpuinfo.is_file():
        fields: dict[str, str] = {}
        for line in cpuinfo.read_text().splitlines():
            key, colon, value = line.partition(":")
            if colon:
                fields.setdefault(key.strip(), value.strip())
        name = fields.get("model name", name)
        flags = frozenset(fields.get("flags", "").split())
    return CpuInfo(name=name, capability=torch.backends.cpu.get_cpu_capability(), flags=flags)


@functools.cache
def cpu_info() -> CpuInfo:
    """This machine's CPU (read once)."""
    return read_cpu_info()
