"""The runtimes' names (light: the CLI's parser and the service settings import them)."""

from __future__ import annotations

from typing import Literal, get_args

RuntimeName = Literal["torch", "onnxruntime", "openvino"]
"""``torch``: eager PyTorch; ``onnxruntime``, ``openvino``: the network's export."""
RUNTIME_NAMES: tuple[RuntimeName, ...] = get_args(RuntimeName)
