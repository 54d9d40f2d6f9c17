"""An ONNX file -> OpenVINO IR (``.xml`` graph + ``.bin`` weights) with
``openvino.convert_model``. Weights stay fp32 (``save_model`` would halve them by default).
Needs the ``export`` extra (openvino)."""

from __future__ import annotations

from pathlib import Path


def convert_onnx_to_openvino(onnx_path: Path, xml_path: Path) -> None:
    """Read ``onnx_path``, write ``xml_path`` and the ``.bin`` beside it."""
    import openvino

    model = openvino.convert_model(str(onnx_path))
    openvino.save_model(model, str(xml_path), compress_to_fp16=False)
