"""The runtimes' names (light: the CLI's parser and the service settings import them)."""

from __future__ import annotations

from typing import Literal, get_args

RuntimeName = Literal[
    "torch",
    "torch-channels-last",
    "torch-compile",
    "torch-bf16",
    "onnxruntime",
    "onnxruntime-int8",
    "openvino",
]
"""What runs the forward pass. ``torch``: eager PyTorch in fp32, the reference;
``torch-channels-last``: the same with NHWC weights and activations; ``torch-compile``:
``torch.compile`` (inductor); ``torch-bf16``: eager under bf16 autocast on the CPU (only
where the CPU has AMX or AVX-512-BF16); ``onnxruntime``, ``openvino``: the network's export;
``onnxruntime-int8``: the ONNX export with int8 convolutions (CPU)."""
RUNTIME_NAMES: tuple[RuntimeName, ...] = get_args(RuntimeName)
TORCH_RUNTIMES: tuple[RuntimeName, ...] = RUNTIME_NAMES[:4]
"""The runtimes that run the ``DDP`` module itself (no export)."""
REFERENCE_RUNTIME: RuntimeName = "torch"
"""What the others' speed and accuracy are measured against, and what ``auto`` falls back to."""

AUTO = "auto"
RuntimeSetting = Literal["auto"] | RuntimeName
"""A runtime's name, or ``auto``: the fastest runtime whose recorded accuracy loss is within
the limit on this CPU (``model.runtimes.choice``)."""
