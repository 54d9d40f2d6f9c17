"""ITF / ISI (the paper's Table 4): scikit-image's PSNR and SSIM checked once against their
definitions with this module's settings, then the averaging over frame pairs and the input
checks."""

import math

import numpy as np
import pytest

from model.video.stability import MAX_PSNR_DB, isi, itf, psnr, ssim


def test_psnr_and_ssim_follow_their_definitions():
    a, b = np.zeros((16, 16), np.uint8), np.full((16, 16), 10, np.uint8)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 10**2))  # MSE = 100
    assert psnr(a, a) == MAX_PSNR_DB
    # Two flat images: every window has zero variance, SSIM = luminance term, K1 = 0.01.
    dark, light = np.full((16, 16), 100, np.uint8), np.full((16, 16), 150, np.uint8)
    c1 = (0.01 * 255) ** 2
    flat = (2 * 100 * 150 + c1) / (100**2 + 150**2 + c1)
    assert ssim(dark, light) == pytest.approx(flat, rel=1e-12)
    # Colour: the mean over channels (here one flat pair and two identical channels).
    rgb_a, rgb_b = np.stack([dark, dark, light], -1), np.stack([light, dark, light], -1)
    assert ssim(rgb_a, rgb_b) == pytest.approx((flat + 1.0 + 1.0) / 3, rel=1e-12)
    noise = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert ssim(noise, noise) == pytest.approx(1.0, abs=1e-12)


def test_itf_and_isi_average_consecutive_pairs():
    frames = [np.full((12, 12), v, np.uint8) for v in (0, 10, 10)]
    assert itf(frames) == pytest.approx((10 * math.log10(255**2 / 100) + MAX_PSNR_DB) / 2)
    assert isi(frames[1:]) == pytest.approx(1.0)
    assert math.isnan(itf(frames[:1])) and math.isnan(isi([]))


def test_metrics_validate_their_inputs():
    with pytest.raises(ValueError, match="uint8"):
        psnr(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))
