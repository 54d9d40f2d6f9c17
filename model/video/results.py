"""One frame's dense pose in a video: what ``iter_video`` yields and the writers take."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.structures import DensePoseResult


@dataclass
class FrameResult:
    """One frame's dense pose.

    Attributes:
        index: frame number from 0.
        image_rgb: (H, W, 3) uint8, the frame.
        result: the persons scoring at least ``VideoOptions.score_threshold``, best first.
        track_ids: (N,) int64, each person's track id (from 1, never reused).
    """

    index: int
    image_rgb: np.ndarray
    result: DensePoseResult
    track_ids: np.ndarray
