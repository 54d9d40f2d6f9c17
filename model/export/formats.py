"""The export formats (light: the CLI's parser imports them)."""

from __future__ import annotations

from typing import Literal, get_args

ExportFormat = Literal["onnx", "openvino"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)
