"""A runtime setting (a name, or ``auto``) -> the runtime that runs a predictor's network.

The torch runtimes run the predictor's own ``DDP``; the others run its export, taken from the
export cache (``model.export.bundle.cached_export``) and written there on first use: the first
start of a network on an exported runtime pays for the export (minutes on a 2-core CPU),
later starts read it back. ``auto`` (``model.runtimes.choice``) never exports unless
``allow_export`` (a runtime whose export is not cached is passed over), and never picks
``torch-compile`` unless ``allow_compile``: it compiles for minutes at start-up, and again on
the first input of a new shape.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import torch

from model.device import cpu_info
from model.export.bundle import MANIFEST_NAME, ExportManifest, cached_export, export_directory
from model.export.formats import ExportFormat
from model.inference.predictor import Predictor
from model.runtimes.base import Runtime
from model.runtimes.choice import RuntimeChoice, choose_runtime
from model.runtimes.names import (
    AUTO,
    REFERENCE_RUNTIME,
    RUNTIME_NAMES,
    TORCH_RUNTIMES,
    RuntimeName,
    RuntimeSetting,
)
from model.runtimes.onnxruntime_backend import OnnxRuntime
from model.runtimes.openvino_backend import OpenVinoRuntime
from model.runtimes.record import RuntimeRecord
from model.runtimes.torch_backend import TorchRuntime, bf16_unavailable

EXPORT_FORMATS: dict[RuntimeName, ExportFormat] = {
    "onnxruntime": "onnx",
    "onnxruntime-int8": "onnx-int8",
    "openvino": "openvino",
}
"""The export each exported runtime runs."""
EXPORT_MODULES: dict[RuntimeName, str] = {
    "onnxruntime": "onnxruntime",
    "onnxruntime-int8": "onnxruntime",
    "openvino": "openvino",
}
"""The module (extra ``export``) each exported runtime imports."""
CXX_COMPILERS = ("g++", "clang++", "c++")
"""What inductor compiles its CPU kernels with (``$CXX`` first)."""


def load_runtime(
    name: RuntimeName, predictor: Predictor, *, cache_root: Path | None = None
) -> Runtime:
    """Runtime ``name`` for ``predictor``'s network, device, precision and thread count
    (``torch.get_num_threads()``); ``cache_root``: the export cache (default
    ``<cache>/exports``)."""
    if name not in RUNTIME_NAMES:
        raise ValueError(f"runtime must be one of {RUNTIME_NAMES}, got {name!r}")
    if name in TORCH_RUNTIMES:
        return TorchRuntime(predictor.model, name)
    directory = cached_export(
        predictor.model, predictor.config, EXPORT_FORMATS[name], root=cache_root
    )
    path = directory / ExportManifest.read(directory).model_file
    threads = torch.get_num_threads()
    if name in ("onnxruntime", "onnxruntime-int8"):
        return OnnxRuntime(
            path,
            device=predictor.device,
            precision=predictor.precision,
            config=predictor.config.input,
            threads=threads,
            name=name,
        )
    return OpenVinoRuntime(path, device=predictor.device, threads=threads)


def unavailable_runtimes(
    predictor: Predictor,
    *,
    allow_export: bool,
    allow_compile: bool,
    cache_root: Path | None = None,
) -> dict[RuntimeName, str]:
    """The runtimes that cannot run ``predictor`` here without more work, each with why: the
    export extra missing, an export not cached (unless ``allow_export``), compiling (unless
    ``allow_compile``) or no C++ compiler for inductor, no bf16 unit."""
    unavailable: dict[RuntimeName, str] = {}
    bf16 = bf16_unavailable(predictor.device)
    if bf16 is not None:
        unavailable["torch-bf16"] = bf16
    compilers = [os.environ["CXX"]] if os.environ.get("CXX") else list(CXX_COMPILERS)
    if not any(shutil.which(compiler) for compiler in compilers):
        unavailable["torch-compile"] = f"no C++ compiler ({', '.join(compilers)}) for inductor"
    elif not allow_compile:
        unavailable["torch-compile"] = (
            "compiles for minutes at start-up and on each new input shape: not allowed"
        )
    for name, export_format in EXPORT_FORMATS.items():
        if importlib.util.find_spec(EXPORT_MODULES[name]) is None:
            unavailable[name] = "the export extra is not installed (pip install -e '.[export]')"
            continue
        directory = export_directory(
            predictor.model, predictor.config, export_format, root=cache_root
        )
        if not allow_export and not (directory / MANIFEST_NAME).is_file():
            unavailable[name] = (
                f"its export is not cached: ddp export --format {export_format}, or allow "
                "auto to export at start-up (minutes)"
            )
    return unavailable


def select_runtime(
    setting: RuntimeSetting,
    predictor: Predictor,
    *,
    weights_sha256: str | None,
    record: RuntimeRecord | None,
    allow_export: bool = False,
    allow_compile: bool = False,
    cache_root: Path | None = None,
) -> RuntimeChoice:
    """The runtime ``setting`` stands for: a name itself; ``auto``: ``choose_runtime`` on
    ``record`` among the runtimes that can run here, on the CPU; ``torch`` on CUDA."""
    if setting != AUTO:
        if setting not in RUNTIME_NAMES:
            raise ValueError(f"runtime must be auto or one of {RUNTIME_NAMES}, got {setting!r}")
        return RuntimeChoice(setting, "asked for by name")
    if predictor.device.type != "cpu":
        return RuntimeChoice(
            REFERENCE_RUNTIME, f"auto ranks CPU runtimes only; on {predictor.device}: torch"
        )
    unavailable = unavailable_runtimes(
        predictor, allow_export=allow_export, allow_compile=allow_compile, cache_root=cache_root
    )
    return choose_runtime(
        record, weights_sha256=weights_sha256, cpu=cpu_info(), unavailable=unavailable
    )
