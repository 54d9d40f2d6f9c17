"""The PyTorch runtimes (``names.TORCH_RUNTIMES``): ``DDP.forward`` itself, eager (the
reference the others are compared with), channels-last, compiled by inductor, or under bf16
autocast on a CPU with AMX or AVX-512-BF16.

``torch-compile`` compiles on the first call of each new input shape (a minute or more for
the default network on a 2-core CPU; inductor's on-disk cache makes later starts shorter),
and the sparse IUV branch's data-dependent sizes split the graph: measure before choosing it
(``benchmarks/cpu_paths.py``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor

from model.device import cpu_info
from model.network.ddp import DDP
from model.runtimes.names import TORCH_RUNTIMES, RuntimeName
from model.structures import DDPOutput

Forward = Callable[[Tensor, Tensor], DDPOutput]


def bf16_unavailable(device: torch.device) -> str | None:
    """Why ``torch-bf16`` cannot run on ``device`` (None: it can): it is a CPU runtime (CUDA
    takes ``precision bf16``), and pays only with a native bf16 unit."""
    if device.type != "cpu":
        return f"a CPU runtime, not for {device}: use precision bf16 on CUDA"
    if cpu_info().bf16_unit is None:
        return f"not available on this CPU ({cpu_info().name}: no AMX or AVX-512-BF16)"
    return None


class TorchRuntime:
    """``Runtime`` over a ``DDP`` module on its own device, as runtime ``name``."""

    def __init__(self, model: DDP, name: RuntimeName = "torch") -> None:
        if name not in TORCH_RUNTIMES:
            raise ValueError(f"a torch runtime is one of {TORCH_RUNTIMES}, got {name!r}")
        self.name = name
        self._forward = _forward_of(model, name)

    @property
    def description(self) -> str:
        detail = {
            "torch": "eager",
            "torch-channels-last": "eager, channels-last",
            "torch-compile": "torch.compile, inductor",
            "torch-bf16": f"eager, bf16 autocast on {cpu_info().bf16_unit}",
        }[self.name]
        return f"torch {torch.__version__} ({detail})"

    def __call__(self, images: Tensor, image_sizes: Tensor) -> DDPOutput:
        return self._forward(images, image_sizes)


def _forward_of(model: DDP, name: RuntimeName) -> Forward:
    if name == "torch-channels-last":
        nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)  # the model stays NCHW
        return lambda images, sizes: nhwc(
            images.contiguous(memory_format=torch.channels_last), sizes
        )
    if name == "torch-compile":
        compiled: Forward = torch.compile(model)
        return compiled
    if name == "torch-bf16":
        device = next(model.parameters()).device
        why = bf16_unavailable(device)
        if why is not None:
            raise ValueError(f"runtime torch-bf16 is {why}")
        return lambda images, sizes: _bf16_forward(model, images, sizes)
    return model


def _bf16_forward(model: DDP, images: Tensor, image_sizes: Tensor) -> DDPOutput:
    """``model`` under CPU bf16 autocast, its floating outputs back in float32 (what
    post-processing and ``DDPOutput`` expect)."""
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        output = model(images, image_sizes)
    detections = output.detections
    return dataclasses.replace(
        output,
        iuv_logits=output.iuv_logits.float(),
        detections=dataclasses.replace(
            detections,
            boxes_xyxy=detections.boxes_xyxy.float(),
            scores=detections.scores.float(),
            mask_logits=detections.mask_logits.float(),
        ),
    )
