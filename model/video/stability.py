"""Inter-frame stability of a video, the metrics of the paper's Table 4.

* ITF (Interframe Transformation Fidelity): the mean PSNR between consecutive frames;
* ISI (Interframe Similarity Index): the mean SSIM between consecutive frames.

Higher means steadier. SSIM is Wang et al. (2004): an 11x11 Gaussian window (sigma 1.5),
K1 = 0.01, K2 = 0.03, data range 255, averaged over the windows that fit inside the image
("valid"; no padding) and over the colour channels. PSNR uses the MSE over all channels; two
identical frames (MSE 0) count as ``MAX_PSNR_DB``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MAX_PSNR_DB = 100.0
"""PSNR of identical frames (their MSE is 0)."""
DATA_RANGE = 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Two (H, W) or (H, W, 3) uint8 images -> PSNR in dB, at most ``MAX_PSNR_DB``."""
    _check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return MAX_PSNR_DB
    return min(MAX_PSNR_DB, 10.0 * math.log10(DATA_RANGE**2 / mse))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """(size,) float64, normalised to sum 1."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-(x**2) / (2 * sigma**2))
    return window / window.sum()


def _filter(x: Tensor, window: Tensor) -> Tensor:
    """(C, 1, H, W) -> separable 'valid' Gaussian filtering, (C, 1, H - k + 1, W - k + 1)."""
    x = F.conv2d(x, window.view(1, 1, -1, 1))
    return F.conv2d(x, window.view(1, 1, 1, -1))


def ssim(a: np.ndarray, b: np.ndarray, *, window_size: int = 11, sigma: float = 1.5) -> float:
    """Two (H, W) or (H, W, 3) uint8 images, each side at least ``window_size`` -> mean SSIM."""
    _check_pair(a, b)
    if min(a.shape[:2]) < window_size:
        raise ValueError(f"images must be at least {window_size} px a side, got {a.shape}")
    window = gaussian_window(window_size, sigma)
    x = torch.from_numpy(a.reshape(*a.shape[:2], -1)).permute(2, 0, 1)[:, None].double()
    y = torch.from_numpy(b.reshape(*b.shape[:2], -1)).permute(2, 0, 1)[:, None].double()
    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    mu_x, mu_y = _filter(x, window), _filter(y, window)
    var_x = _filter(x * x, window) - mu_x**2
    var_y = _filter(y * y, window) - mu_y**2
    cov = _filter(x * y, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(ssim_map.mean())


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
