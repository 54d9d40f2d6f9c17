"""The interface every runtime implements, and the conversion of an exported graph's outputs
into the ``DDPOutput`` that post-processing takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from model.structures import DDPOutput, Detections


class Runtime(Protocol):
    """Runs DDP's forward pass: ``__call__(images (B, 3, H, W) float32 normalised and padded,
    image_sizes (B, 2) int64) -> DDPOutput``, its tensors on the images' device (see
    ``DDP.forward``)."""

    @property
    def name(self) -> str:
        """``torch``, ``onnxruntime`` or ``openvino`` (``selection.RUNTIME_NAMES``)."""
        ...

    @property
    def description(self) -> str:
        """Version and what it runs on, e.g. ``onnxruntime 1.32.0 (CPUExecutionProvider)``."""
        ...

    def __call__(self, images: Tensor, image_sizes: Tensor) -> DDPOutput: ...


def ddp_output(
    outputs: Sequence[np.ndarray], image_sizes: Tensor, device: torch.device
) -> DDPOutput:
    """An exported graph's outputs in ``model.export.graph.OUTPUT_NAMES`` order (image_index,
    boxes_xyxy, scores, mask_logits, iuv_logits, active) -> ``DDPOutput`` on ``device``;
    ``image_sizes`` (B, 2) int64 is the graph's input, kept as given."""
    image_index, boxes, scores, mask_logits, iuv_logits, active = (
        torch.from_numpy(np.ascontiguousarray(array)).to(device) for array in outputs
    )
    return DDPOutput(
        detections=Detections(
            image_index=image_index, boxes_xyxy=boxes, scores=scores, mask_logits=mask_logits
        ),
        iuv_logits=iuv_logits,
        active=active,
        image_sizes=image_sizes,
    )
