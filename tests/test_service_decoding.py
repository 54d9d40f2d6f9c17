"""Upload decoding: formats, conversions, orientation, and every way an upload can be bad."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from service.decoding import decode_image
from service.errors import ServiceError
from service.testing import bomb_png, encode, random_image

LIMIT = 10_000_000


def _error(data: bytes, max_pixels: int = LIMIT) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        decode_image(data, max_pixels=max_pixels)
    return caught.value


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP", "BMP"])
def test_accepted_formats_decode_to_rgb(image_format: str) -> None:
    image = random_image(0, 40, 60)
    decoded = decode_image(encode(image, image_format), max_pixels=LIMIT).rgb
    assert decoded.shape == (40, 60, 3) and decoded.dtype == np.uint8
    if image_format in ("PNG", "BMP"):
        np.testing.assert_array_equal(decoded, image)


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = random_image(1, 30, 20)[..., 0]
    decoded = decode_image(encode(gray), max_pixels=LIMIT).rgb
    assert decoded.shape == (30, 20, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], gray)


def test_rgba_drops_alpha() -> None:
    rgba = np.dstack([random_image(2, 30, 20), np.full((30, 20), 7, np.uint8)])
    decoded = decode_image(encode(rgba), max_pixels=LIMIT).rgb
    np.testing.assert_array_equal(decoded, rgba[..., :3])


def test_palette_image_is_converted() -> None:
    paletted = Image.fromarray(random_image(3, 30, 20)).convert("P")
    decoded = decode_image(encode(np.asarray(paletted.convert("RGB"))), max_pixels=LIMIT).rgb
    assert decoded.shape == (30, 20, 3)


def test_16_bit_grayscale_keeps_high_byte() -> None:
    gray16 = (np.arange(30 * 20, dtype=np.uint16).reshape(30, 20) * 97).astype(np.uint16)
    ok, png = cv2.imencode(".png", gray16)
    assert ok
    decoded = decode_image(png.tobytes(), max_pixels=LIMIT).rgb
    np.testing.assert_array_equal(decoded[..., 0], (gray16 >> 8).astype(np.uint8))


def test_16_bit_rgb_is_converted_to_8_bit() -> None:
    rgb16 = random_image(4, 30, 20).astype(np.uint16) * 257
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    assert ok
    decoded = decode_image(png.tobytes(), max_pixels=LIMIT).rgb
    assert decoded.dtype == np.uint8 and decoded.shape == (30, 20, 3)
    np.testing.assert_allclose(decoded, rgb16 // 257, atol=1)


def test_exif_orientation_is_applied() -> None:
    """Stored 40 wide × 20 high, red on the left; orientation 6 (rotate 90° clockwise to view)
    gives 20 wide × 40 high with red on top."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(stored, "JPEG", exif=exif, quality=95), max_pixels=LIMIT).rgb
    assert decoded.shape == (40, 20, 3)
    assert decoded[5, 10, 0] > 200 and decoded[35, 10, 0] < 50


def test_empty_upload() -> None:
    assert (_error(b"").status, _error(b"").code) == (400, "empty_body")


def test_non_image_bytes() -> None:
    error = _error(b"%PDF-1.4 this is not an image at all")
    assert (error.status, error.code) == (415, "unsupported_image")
    assert "JPEG" in error.message


def test_unsupported_image_format() -> None:
    assert _error(encode(random_image(5, 10, 10), "GIF")).status == 415


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_truncated_image(image_format: str) -> None:
    data = encode(random_image(6, 64, 64), image_format)
    error = _error(data[: len(data) // 2])
    assert (error.status, error.code) == (400, "corrupt_image")
    assert "truncated" in error.message


def test_decompression_bomb_rejected_from_header() -> None:
    data = bomb_png(100_000, 100_000)
    assert len(data) < 200
    error = _error(data)
    assert (error.status, error.code) == (413, "too_many_pixels")


def test_pixel_limit_checked_before_decoding() -> None:
    error = _error(bomb_png(4000, 3000), max_pixels=4000 * 3000 - 1)
    assert (error.status, error.code) == (413, "too_many_pixels")
    assert "12000000" in error.message


# -- the size bound (max_image_side) --------------------------------------------------------


def test_an_image_within_the_side_limit_decodes_unchanged() -> None:
    image = random_image(7, 40, 60)
    decoded = decode_image(encode(image), max_pixels=LIMIT, max_side=60)
    assert not decoded.downscaled and decoded.original_size == (40, 60)
    np.testing.assert_array_equal(decoded.rgb, image)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_a_longer_image_is_downscaled_to_the_side_limit(image_format: str) -> None:
    """1200 × 1600 with a bright square in the top-left quarter: 300 × 400 at a limit of 400,
    the square still in its place (the JPEG is decoded at 1/4 scale by its decoder)."""
    image = np.full((1200, 1600, 3), 20, np.uint8)
    image[100:500, 200:600] = 230
    decoded = decode_image(encode(image, image_format), max_pixels=LIMIT, max_side=400)
    assert decoded.downscaled and decoded.original_size == (1200, 1600)
    assert decoded.rgb.shape == (300, 400, 3) and decoded.rgb.dtype == np.uint8
    assert decoded.rgb[75, 100].min() > 200 and decoded.rgb[200, 300].max() < 50


def test_the_side_limit_applies_to_the_upright_image() -> None:
    """Stored 800 wide × 400 high with EXIF orientation 6: upright 400 × 800, bounded to
    100 × 200 (height × width) at a limit of 200."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(random_image(8, 400, 800), "JPEG", exif=exif)
    decoded = decode_image(data, max_pixels=LIMIT, max_side=200)
    assert decoded.original_size == (800, 400)
    assert decoded.rgb.shape == (200, 100, 3)


def test_the_pixel_limit_still_counts_the_full_size() -> None:
    error = _error(bomb_png(4000, 3000), max_pixels=4000 * 3000 - 1)
    assert error.code == "too_many_pixels"
    with pytest.raises(ServiceError) as caught:
        decode_image(bomb_png(4000, 3000), max_pixels=4000 * 3000 - 1, max_side=100)
    assert caught.value.code == "too_many_pixels"

