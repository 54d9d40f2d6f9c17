"""The ``openvino`` runtime: the OpenVINO IR export compiled for the CPU plugin, in fp32
(the plugin would otherwise pick bf16 on CPUs that have it) with torch's intra-op thread
count."""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from torch import Tensor

from model.export.graph import INPUT_NAMES, OUTPUT_NAMES
from model.runtimes.base import ddp_output
from model.structures import DDPOutput


class OpenVinoRuntime:
    """``Runtime`` over one infer request of ``xml_path`` compiled for the CPU."""

    name = "openvino"

    def __init__(self, xml_path: Path, *, device: torch.device, threads: int) -> None:
        import openvino

        if device.type != "cpu":
            raise ValueError(
                f"the openvino runtime runs on the CPU, not {device}: use device cpu, or "
                "runtime onnxruntime on CUDA"
            )
        core = openvino.Core()
        self.compiled = core.compile_model(
            str(xml_path),
            "CPU",
            {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads},
        )
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()  # one infer request: one call at a time
        self.version = openvino.get_version()

    @property
    def description(self) -> str:
        return f"openvino {self.version} (CPU, f32)"

    def __call__(self, images: Tensor, image_sizes: Tensor) -> DDPOutput:
        inputs = {
            name: tensor.cpu().numpy()
            for name, tensor in zip(INPUT_NAMES, (images, image_sizes), strict=True)
        }
        with self.lock:
            results = self.request.infer(inputs)
            outputs = [results[self.compiled.output(name)] for name in OUTPUT_NAMES]
        return ddp_output(outputs, image_sizes, images.device)
