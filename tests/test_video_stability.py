"""ITF / ISI (the paper's Table 4): PSNR and SSIM against closed forms and a float64
reference written out loop by loop."""

import math

import numpy as np
import pytest

from model.video.stability import MAX_PSNR_DB, gaussian_window, isi, itf, psnr, ssim


def reference_ssim(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """Wang et al. 2004, one window at a time, float64, single channel."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a.astype(np.float64), b.astype(np.float64)
    values = []
    for i in range(a.shape[0] - size + 1):
        for j in range(a.shape[1] - size + 1):
            pa, pb = a[i : i + size, j : j + size], b[i : i + size, j : j + size]
            mu_a, mu_b = (window * pa).sum(), (window * pb).sum()
            var_a = (window * (pa - mu_a) ** 2).sum()
            var_b = (window * (pb - mu_b) ** 2).sum()
            cov = (window * (pa - mu_a) * (pb - mu_b)).sum()
            values.append(
                ((2 * mu_a * mu_b + c1) * (2 * cov + c2))
                / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
            )
    return float(np.mean(values))


def test_ssim_of_identical_images_is_one():
    image = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_two_flat_images_has_a_closed_form():
    a, b = np.full((16, 16), 100, np.uint8), np.full((16, 16), 150, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1), rel=1e-12)


def test_ssim_matches_a_float64_reference():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (17, 21), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, b) == pytest.approx(reference_ssim(a, b), abs=1e-10)
    rgb_a, rgb_b = np.stack([a, b, a], -1), np.stack([b, b, a], -1)
    expected = (reference_ssim(a, b) + 1.0 + 1.0) / 3  # channel mean
    assert ssim(rgb_a, rgb_b) == pytest.approx(expected, abs=1e-10)


def test_gaussian_window_sums_to_one():
    assert float(gaussian_window().sum()) == pytest.approx(1.0)


def test_psnr():
    a = np.zeros((4, 4), np.uint8)
    b = np.full((4, 4), 10, np.uint8)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(a, a) == MAX_PSNR_DB


def test_itf_and_isi_average_consecutive_pairs():
    frames = [np.full((12, 12), v, np.uint8) for v in (0, 10, 10)]
    assert itf(frames) == pytest.approx((10 * math.log10(255**2 / 100) + MAX_PSNR_DB) / 2)
    assert isi(frames[1:]) == pytest.approx(1.0)
    assert math.isnan(itf(frames[:1]))


def test_metrics_validate_their_inputs():
    with pytest.raises(ValueError, match="uint8"):
        psnr(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))
