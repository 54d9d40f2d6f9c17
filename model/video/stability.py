"""Inter-frame stability of a video, the metrics of the paper's Table 4.

* ITF (Interframe Transformation Fidelity): the mean PSNR between consecutive frames;
* ISI (Interframe Similarity Index): the mean SSIM between consecutive frames.

Higher means steadier. Both are scikit-image's (the only module importing it). SSIM is Wang et
al. (2004): an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 255,
population (not sample) covariances, averaged over the windows that fit inside the image
(scikit-image crops the border) and over the colour channels. PSNR uses the MSE over all
channels; two identical frames (MSE 0) count as ``MAX_PSNR_DB``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

MAX_PSNR_DB = 100.0
"""PSNR of identical frames (their MSE is 0)."""
DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
"""Side of scikit-image's Gaussian window at ``SSIM_SIGMA`` (it truncates at 3.5 sigma)."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Two (H, W) or (H, W, 3) uint8 images -> PSNR in dB, at most ``MAX_PSNR_DB``."""
    _check_pair(a, b)
    if np.array_equal(a, b):
        return MAX_PSNR_DB
    return min(MAX_PSNR_DB, float(peak_signal_noise_ratio(a, b, data_range=DATA_RANGE)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Two (H, W) or (H, W, 3) uint8 images, each side at least ``SSIM_WINDOW`` -> mean SSIM."""
    _check_pair(a, b)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"images must be at least {SSIM_WINDOW} px a side, got {a.shape}")
    return float(
        structural_similarity(
            a,
            b,
            data_range=DATA_RANGE,
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            use_sample_covariance=False,
            channel_axis=-1 if a.ndim == 3 else None,
        )
    )


def itf(frames: Iterable[np.ndarray]) -> float:
    """Mean PSNR of consecutive frames (NaN for fewer than two frames)."""
    return _mean_over_pairs(frames, psnr)


def isi(frames: Iterable[np.ndarray]) -> float:
    """Mean SSIM of consecutive frames (NaN for fewer than two frames)."""
    return _mean_over_pairs(frames, ssim)


def _mean_over_pairs(
    frames: Iterable[np.ndarray], metric: Callable[[np.ndarray, np.ndarray], float]
) -> float:
    values = []
    previous = None
    for frame in frames:
        if previous is not None:
            values.append(metric(previous, frame))
        previous = frame
    return float(np.mean(values)) if values else math.nan


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.dtype != np.uint8 or b.dtype != np.uint8 or a.ndim not in (2, 3):
        raise ValueError(
            f"need two (H, W) or (H, W, C) uint8 images of one shape, got {a.shape} {a.dtype} "
            f"and {b.shape} {b.dtype}"
        )
