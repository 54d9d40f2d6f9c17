"""The export formats (light: the CLI's parser imports them)."""

from __future__ import annotations

from typing import Literal, get_args

ExportFormat = Literal["onnx", "openvino", "onnx-int8"]
"""``onnx-int8``: the ONNX graph with int8 convolutions (``model.export.quantize``)."""
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)
