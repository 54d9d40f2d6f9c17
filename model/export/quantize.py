"""The ONNX export with its convolutions in int8 (format ``onnx-int8``): ONNX Runtime's static
QDQ quantisation (``onnxruntime.quantization.quantize_static``) of every ``Conv``, weights
int8 per output channel, activations uint8 with min/max ranges calibrated on
``CALIBRATION_IMAGES`` preprocessed images. Everything else (the sparse IUV branch's GEMMs,
IAN, detection) stays float32. Needs the ``export`` extra.

The calibration images default to the first images of the recipe's validation set (the one
the detection settings are chosen on: never the held-out set the accuracy is measured on).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from model.config import InputConfig
from model.export.graph import INPUT_NAMES
from model.inference.images import read_image_rgb
from model.inference.preprocess import image_to_tensor, prepare_batch

CALIBRATION_IMAGES = 16
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def default_calibration_dir() -> Path:
    """The recipe's validation set (``DataSettings.calibration_split``): ``<dir>/images/*``."""
    from model.training.settings import DataSettings

    return DataSettings().calibration_split().directory


def calibration_images(directory: Path, count: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """The first ``count`` images (by name) of ``directory/images`` as (H, W, 3) uint8 RGB.

    Raises:
        FileNotFoundError: no images there, with how to make them.
    """
    folder = directory / "images"
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(
            f"the int8 export calibrates on the images of {folder}, and there are none: render "
            "the recipe's validation set (ddp recipe) or write a set with ddp synth --out DIR"
        )
    return [read_image_rgb(path) for path in paths[:count]]


def _network_inputs(
    images_rgb: Sequence[np.ndarray], config: InputConfig
) -> Iterator[dict[str, np.ndarray]]:
    """Each image, preprocessed as the predictor does, as the graph's inputs."""
    for image in images_rgb:
        batch = prepare_batch([image_to_tensor(image)], config)
        yield dict(
            zip(INPUT_NAMES, (batch.images.numpy(), batch.image_sizes.numpy()), strict=True)
        )


def quantize_onnx(
    onnx_path: Path, out_path: Path, images_rgb: Sequence[np.ndarray], config: InputConfig
) -> None:
    """Write ``onnx_path``'s graph with int8 convolutions to ``out_path``, calibrated on
    ``images_rgb`` ((H, W, 3) uint8 RGB, at least one) preprocessed by ``config``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not images_rgb:
        raise ValueError("the int8 export needs at least one calibration image")

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.inputs = _network_inputs(images_rgb, config)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.inputs, None)

    quantize_static(
        str(onnx_path),
        str(out_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
