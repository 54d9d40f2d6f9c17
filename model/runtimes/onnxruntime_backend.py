"""The ``onnxruntime`` runtime: the ONNX export in an ONNX Runtime session.

On the CPU it runs the CPU provider with torch's intra-op thread count. On CUDA it asks for
the TensorRT provider first, then the CUDA provider (the graph's data-dependent parts —
NonZero, NonMaxSuppression, the scatters — fall back to CUDA where TensorRT lacks them),
then the CPU; only the providers the installed build has are used (``onnxruntime-gpu`` and
the TensorRT libraries bring the first two). TensorRT engines are cached in
``<cache>/tensorrt``, built for one shape profile from the config (1 to
``TENSORRT_MAX_BATCH`` images up to ``max_side`` squared), in fp16 when the predictor's
precision is fp16. The CUDA path is written but has not run here: no GPU (docs/export.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from model.config import InputConfig
from model.data.cache import cache_dir
from model.device import Precision
from model.export.graph import INPUT_NAMES, OUTPUT_NAMES
from model.runtimes.base import ddp_output
from model.structures import DDPOutput

TENSORRT_MAX_BATCH = 8
"""The largest batch of the TensorRT shape profile (the service's default on CUDA)."""


def _padded(side: int, divisor: int) -> int:
    return -(-side // divisor) * divisor


def tensorrt_profile(config: InputConfig) -> dict[str, str]:
    """TensorRT EP shape-profile options: min 1 x 64 x 64, opt one image of the config's
    size, max ``TENSORRT_MAX_BATCH`` images of max_side x max_side (padded)."""
    divisor = config.size_divisibility
    short, long = _padded(config.short_side, divisor), _padded(config.max_side, divisor)
    shapes = {
        "trt_profile_min_shapes": (1, 2 * divisor, 2 * divisor),
        "trt_profile_opt_shapes": (1, short, long),
        "trt_profile_max_shapes": (TENSORRT_MAX_BATCH, long, long),
    }
    return {
        key: f"images:{batch}x3x{height}x{width},image_sizes:{batch}x2"
        for key, (batch, height, width) in shapes.items()
    }


def execution_providers(
    device: torch.device, precision: Precision, config: InputConfig, available: list[str]
) -> list[str | tuple[str, dict[str, Any]]]:
    """The providers to ask for, best first, of those ``available``."""
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    index = str(device.index or 0)
    wanted: list[tuple[str, dict[str, Any]]] = [
        (
            "TensorrtExecutionProvider",
            {
                "device_id": index,
                "trt_fp16_enable": str(precision == "fp16"),
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(cache_dir() / "tensorrt"),
                **tensorrt_profile(config),
            },
        ),
        ("CUDAExecutionProvider", {"device_id": index}),
    ]
    return [provider for provider in wanted if provider[0] in available] + ["CPUExecutionProvider"]


class OnnxRuntime:
    """``Runtime`` over an ONNX Runtime session of ``model_path``: runtime ``onnxruntime``, or
    ``onnxruntime-int8`` (the int8 export, CPU only)."""

    def __init__(
        self,
        model_path: Path,
        *,
        device: torch.device,
        precision: Precision,
        config: InputConfig,
        threads: int,
        name: str = "onnxruntime",
    ) -> None:
        import onnxruntime

        if name == "onnxruntime-int8" and device.type != "cpu":
            raise ValueError(f"the onnxruntime-int8 runtime runs on the CPU, not {device}")
        self.name = name

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        providers = execution_providers(
            device, precision, config, onnxruntime.get_available_providers()
        )
        self.session = onnxruntime.InferenceSession(str(model_path), options, providers=providers)
        self.device = device
        self.version = onnxruntime.__version__

    @property
    def description(self) -> str:
        int8 = ", int8 Conv" if self.name == "onnxruntime-int8" else ""
        return f"onnxruntime {self.version} ({', '.join(self.session.get_providers())}{int8})"

    def __call__(self, images: Tensor, image_sizes: Tensor) -> DDPOutput:
        inputs: dict[str, np.ndarray] = {
            name: tensor.cpu().numpy()
            for name, tensor in zip(INPUT_NAMES, (images, image_sizes), strict=True)
        }
        outputs = self.session.run(list(OUTPUT_NAMES), inputs)
        return ddp_output(outputs, image_sizes, images.device)
