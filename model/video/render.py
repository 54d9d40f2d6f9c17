"""Frames of the two visualisation videos.

* parts: ``model.outputs.visualize.draw_overlay`` over the frame (part colours, U/V isocontours,
  boxes and scores);
* viridis: the fine segmentation alone, chart I scaled to ``round(I · 255 / 24)`` through
  OpenCV's VIRIDIS colour map, so the background (I = 0) is viridis(0) = RGB (68, 1, 84).
"""

from __future__ import annotations

import cv2
import numpy as np

from model.config import NUM_PARTS

VIRIDIS_BACKGROUND_RGB = (68, 1, 84)
"""viridis(0), the colour of I = 0."""


def viridis_parts(parts: np.ndarray) -> np.ndarray:
    """(H, W) uint8 chart I in 0..24 -> (H, W, 3) uint8 RGB."""
    if parts.ndim != 2 or parts.dtype != np.uint8:
        raise ValueError(f"parts must be (H, W) uint8, got {parts.shape} {parts.dtype}")
    scaled = np.round(parts.astype(np.float32) * (255.0 / NUM_PARTS)).astype(np.uint8)
    bgr = cv2.applyColorMap(scaled, cv2.COLORMAP_VIRIDIS)
    rgb: np.ndarray = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return rgb
