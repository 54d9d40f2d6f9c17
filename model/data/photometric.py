"""The camera after the scene: blur, exposure, white balance, noise, JPEG, grayscale.

``finish_image`` turns the composited float image into the final uint8 picture; labels do
not change. Without a ``Photometric`` it does what the engine always did (Gaussian blur,
Gaussian noise, rounding); with one it adds motion blur, exposure, contrast, gamma, a
per-channel white-balance gain, signal-dependent ("Poisson-like") noise, an occasional
grayscale conversion and a JPEG re-encode. Every random number comes from the caller's
generator, so a picture is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PhotometricConfig:
    """Ranges the camera effects are drawn from (uniform unless said otherwise)."""

    exposure: tuple[float, float] = (0.6, 1.5)
    """Overall gain (log-uniform)."""
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.8, 1.25)
    white_balance: float = 0.1
    """Std of the log gain of each channel (normalised to keep the mean gain 1)."""
    shot_noise: tuple[float, float] = (0.0, 0.004)
    """Variance of the signal-dependent noise per unit intensity."""
    motion_blur: float = 0.15
    """Probability of a linear motion blur of 3-11 px."""
    jpeg: float = 0.7
    """Probability of a JPEG re-encode at quality ``jpeg_quality``."""
    jpeg_quality: tuple[int, int] = (25, 95)
    grayscale: float = 0.05
    """Probability of a grayscale picture."""
    edge_blur: tuple[float, float] = (0.4, 1.0)
    """Gaussian sigma (pixels) of the blend across object outlines (no cut-out edges)."""


@dataclass(frozen=True)
class Photometric:
    """The camera effects of one picture (drawn by ``sample_photometric``)."""

    exposure: float
    contrast: float
    gamma: float
    gains: np.ndarray
    """(3,) RGB white-balance gains."""
    shot_noise: float
    motion_length: int
    """Pixels (0 = no motion blur)."""
    motion_angle: float
    """Degrees."""
    jpeg_quality: int
    """0 = no re-encode."""
    grayscale: bool
    edge_blur: float
    """Sigma in pixels, see ``soften_edges``."""


def sample_photometric(rng: np.random.Generator, config: PhotometricConfig) -> Photometric:
    gains = np.exp(rng.normal(0.0, config.white_balance, size=3))
    moving = rng.random() < config.motion_blur
    length = int(rng.integers(3, 12))
    encode = rng.random() < config.jpeg
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    return Photometric(
        exposure=float(np.exp(rng.uniform(*np.log(config.exposure)))),
        contrast=float(rng.uniform(*config.contrast)),
        gamma=float(rng.uniform(*config.gamma)),
        gains=gains / gains.mean(),
        shot_noise=float(rng.uniform(*config.shot_noise)),
        motion_length=length if moving else 0,
        motion_angle=float(rng.uniform(0.0, 180.0)),
        jpeg_quality=quality if encode else 0,
        grayscale=bool(rng.random() < config.grayscale),
        edge_blur=float(rng.uniform(*config.edge_blur)),
    )


def motion_kernel(length: int, angle: float) -> np.ndarray:
    """(L, L) float32 line kernel of ``length`` px at ``angle`` degrees, summing to 1."""
    kernel = np.zeros((length, length), dtype=np.float32)
    centre = (length - 1) / 2
    dx, dy = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    t = np.linspace(-centre, centre, 2 * length)
    kernel[np.round(centre + t * dy).astype(int), np.round(centre + t * dx).astype(int)] = 1.0
    return kernel / kernel.sum()


def soften_edges(image: np.ndarray, segments: np.ndarray, sigma: float) -> np.ndarray:
    """Blur (H, W, 3) float ``image`` by ``sigma`` only near the outlines of the (H, W)
    uint16 ``segments`` (one id per object), as a lens would, not a cut-out."""
    kernel = np.ones((3, 3), np.uint8)
    edges = cv2.dilate(segments, kernel) != cv2.erode(segments, kernel)
    if sigma <= 0 or not edges.any():
        return image
    out = image.copy()
    out[edges] = cv2.GaussianBlur(image, (0, 0), sigma)[edges]
    return out


def _tone(image: np.ndarray, camera: Photometric) -> np.ndarray:
    """Exposure and white balance (gains), contrast about the mean, then gamma; in [0, 1]."""
    image = np.clip(image * (camera.exposure * camera.gains).astype(np.float32), 0.0, 1.0)
    mean = image.mean()
    image = np.clip((image - mean) * camera.contrast + mean, 0.0, 1.0)
    return np.power(image, camera.gamma, dtype=np.float32)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB through a JPEG encode/decode at ``quality``."""
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
    assert decoded is not None, "OpenCV failed to round-trip a JPEG"
    return np.ascontiguousarray(decoded[..., ::-1])


def finish_image(
    image: np.ndarray,
    *,
    blur: float,
    noise: float,
    rng: np.random.Generator,
    camera: Photometric | None,
) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1] -> (H, W, 3) uint8 RGB, the picture the camera takes.

    Args:
        blur: Gaussian blur sigma in pixels (0 = none).
        noise: std of the additive Gaussian noise on [0, 1] intensities.
        rng: the only source of noise.
        camera: the other effects; None: only blur, noise and rounding.
    """
    if blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    if camera is not None and camera.motion_length:
        kernel = motion_kernel(camera.motion_length, camera.motion_angle)
        image = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)
    if camera is not None:
        image = _tone(image, camera)
    grain = rng.normal(0, noise, image.shape)
    if camera is not None and camera.shot_noise > 0:
        grain += rng.normal(0, 1, image.shape) * np.sqrt(camera.shot_noise * image)
    out = np.clip(np.round((image + grain) * 255), 0, 255).astype(np.uint8)
    if camera is None:
        return out
    if camera.grayscale:
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    return _jpeg(out, camera.jpeg_quality) if camera.jpeg_quality else out
