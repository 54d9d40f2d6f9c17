"""A runtime's name -> that runtime for a predictor's network.

``torch`` runs the predictor's own ``DDP``; the others run its export, taken from the export
cache (``model.export.bundle.cached_export``) and written there on first use: the first
start of a network on a runtime pays for the export (minutes on a 2-core CPU), later starts
read it back.
"""

from __future__ import annotations

from pathlib import Path

import torch

from model.export.bundle import ExportManifest, cached_export
from model.export.formats import ExportFormat
from model.inference.predictor import Predictor
from model.runtimes.base import Runtime
from model.runtimes.names import RUNTIME_NAMES, RuntimeName
from model.runtimes.onnxruntime_backend import OnnxRuntime
from model.runtimes.openvino_backend import OpenVinoRuntime
from model.runtimes.torch_eager import TorchRuntime

EXPORT_FORMATS: dict[RuntimeName, ExportFormat] = {"onnxruntime": "onnx", "openvino": "openvino"}
"""The export each runtime runs."""


def load_runtime(
    name: RuntimeName, predictor: Predictor, *, cache_root: Path | None = None
) -> Runtime:
    """Runtime ``name`` for ``predictor``'s network, device, precision and thread count
    (``torch.get_num_threads()``); ``cache_root``: the export cache (default
    ``<cache>/exports``)."""
    if name not in RUNTIME_NAMES:
        raise ValueError(f"runtime must be one of {RUNTIME_NAMES}, got {name!r}")
    if name == "torch":
        return TorchRuntime(predictor.model)
    directory = cached_export(
        predictor.model, predictor.config, EXPORT_FORMATS[name], root=cache_root
    )
    path = directory / ExportManifest.read(directory).model_file
    threads = torch.get_num_threads()
    if name == "onnxruntime":
        return OnnxRuntime(
            path,
            device=predictor.device,
            precision=predictor.precision,
            config=predictor.config.input,
            threads=threads,
        )
    return OpenVinoRuntime(path, device=predictor.device, threads=threads)
