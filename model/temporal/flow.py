"""Optical flow estimators behind one interface: OpenCV's DIS (default) and RAFT.

A ``FlowEstimator`` takes pairs of frames and returns, for each pair, the flow from the
source to the target in pixels: target(p + flow(p)) ≈ source(p), (dx, dy) per pixel (see
``model.temporal.warp`` for the coordinate convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import cv2
import numpy as np
import torch
from torch import Tensor

FlowName = Literal["dis", "raft"]
DISPreset = Literal["ultrafast", "fast", "medium"]

_DIS_PRESETS = {
    "ultrafast": cv2.DISOpticalFlow_PRESET_ULTRAFAST,
    "fast": cv2.DISOpticalFlow_PRESET_FAST,
    "medium": cv2.DISOpticalFlow_PRESET_MEDIUM,
}


class FlowEstimator(Protocol):
    def __call__(self, sources: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> Tensor:
        """N (H, W, 3) uint8 RGB sources and N targets of the same size -> (N, 2, H, W)
        float32 flows (dx, dy) in pixels from each source to its target."""
        ...


def check_pairs(sources: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> tuple[int, int]:
    """Validate frame pairs for a ``FlowEstimator``; their common (H, W)."""
    if len(sources) != len(targets) or not sources:
        raise ValueError(
            f"need as many sources as targets, at least one: {len(sources)}, {len(targets)}"
        )
    shape = sources[0].shape
    for frame in (*sources, *targets):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
        if frame.shape != shape:
            raise ValueError(f"frames must share one size, got {shape} and {frame.shape}")
    return int(shape[0]), int(shape[1])


class DISFlow:
    """OpenCV's Dense Inverse Search flow on grey frames (CPU, no weights)."""

    def __init__(self, preset: DISPreset = "medium") -> None:
        if preset not in _DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; choose one of {list(_DIS_PRESETS)}")
        self._dis = cv2.DISOpticalFlow.create(_DIS_PRESETS[preset])

    def __call__(self, sources: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> Tensor:
        height, width = check_pairs(sources, targets)
        flows = np.zeros((len(sources), height, width, 2), dtype=np.float32)
        for i, (source, target) in enumerate(zip(sources, targets, strict=True)):
            flows[i] = self._dis.calc(
                cv2.cvtColor(source, cv2.COLOR_RGB2GRAY),
                cv2.cvtColor(target, cv2.COLOR_RGB2GRAY),
                flows[i],
            )
        return torch.from_numpy(flows).permute(0, 3, 1, 2).contiguous()  # [N, 2, H, W]
