"""Domain randomisation of the data engine without the body model: the photograph pool,
camera effects, distractors and occlusion by depth, plausible outfits."""

import math

import cv2
import numpy as np
import pytest

from model.data.appearance import AppearanceConfig, albedo, sample_outfit
from model.data.backgrounds import BackgroundPool, PhotoCrop, crop_pixels, load_photo
from model.data.distractors import (
    Distractor,
    DistractorConfig,
    draw_distractor,
    polygon_mask,
    sample_distractors,
)
from model.data.photometric import (
    PhotometricConfig,
    finish_image,
    motion_kernel,
    sample_photometric,
    soften_edges,
)

HEIGHT, WIDTH = 48, 64


@pytest.fixture
def pool(tmp_path) -> BackgroundPool:
    """Three small synthetic "photographs": noise, a gradient, a wide noisy PNG."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, 120, dtype=np.uint8)[None, :, None].repeat(80, 0).repeat(3, 2)
    wide = cv2.resize(noise, (300, 50))
    paths = [tmp_path / "noise.jpg", tmp_path / "ramp.jpg", tmp_path / "wide.png"]
    for path, image in zip(paths, (noise, ramp, wide), strict=True):
        cv2.imwrite(str(path), image)
    return BackgroundPool.from_paths(paths)


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(HEIGHT, WIDTH, 3)).astype(np.float32)


# -- the photograph pool -------------------------------------------------------------------


def test_pool_crops_any_photo_to_the_scene_size(pool):
    rng = np.random.default_rng(1)
    for _ in range(12):
        crop = pool.sample_crop(rng, max_side=128, scale_range=(0.2, 1.0))
        out = crop_pixels(crop, HEIGHT, WIDTH)
        assert out.shape == (HEIGHT, WIDTH, 3) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_pool_sampling_is_deterministic_for_a_seed(pool):
    def crops(seed):
        rng = np.random.default_rng(seed)
        return [pool.sample_crop(rng, max_side=128, scale_range=(0.3, 1.0)) for _ in range(5)]

    assert crops(4) == crops(4) and crops(4) != crops(5)


def test_photos_are_cached_downscaled_and_flips_mirror(pool):
    photo = load_photo(pool.paths[2], 100)  # 300 x 50 -> 100 x 17
    assert max(photo.shape[:2]) == 100 and not photo.flags.writeable
    assert load_photo(pool.paths[2], 100) is photo  # decoded once per process
    crop = PhotoCrop(path=pool.paths[1], max_side=120, scale=1.0, x=0.5, y=0.5, flip=False)
    plain = crop_pixels(crop, HEIGHT, WIDTH)
    mirrored = crop_pixels(PhotoCrop(**{**crop.__dict__, "flip": True}), HEIGHT, WIDTH)
    assert np.array_equal(mirrored, plain[:, ::-1])
    assert plain[:, -1].mean() > plain[:, 0].mean()  # the ramp rises to the right


def test_pool_rejects_what_it_cannot_read(tmp_path, pool):
    with pytest.raises(ValueError, match="at least one"):
        BackgroundPool.from_paths([])
    with pytest.raises(ValueError, match="expected an image file"):
        BackgroundPool.from_paths([tmp_path / "drawing.svg"])
    with pytest.raises(FileNotFoundError):
        BackgroundPool.from_paths([tmp_path / "missing.jpg"])
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="not an image"):
        load_photo(str(tmp_path / "broken.jpg"), 64)
    assert len(BackgroundPool.from_directory(tmp_path)) == 4  # 3 photos + the broken one


# -- camera effects --------------------------------------------------------------------------


def test_camera_effects_keep_shape_dtype_and_range_and_are_deterministic():
    config = PhotometricConfig(motion_blur=1.0, jpeg=1.0, grayscale=0.0)
    camera = sample_photometric(np.random.default_rng(0), config)
    assert repr(camera) == repr(sample_photometric(np.random.default_rng(0), config))
    assert camera.motion_length >= 3 and camera.jpeg_quality > 0

    def finish(seed):
        rng = np.random.default_rng(seed)
        return finish_image(_image(), blur=0.8, noise=0.02, rng=rng, camera=camera)

    out = finish(3)
    assert out.shape == (HEIGHT, WIDTH, 3) and out.dtype == np.uint8
    assert np.array_equal(out, finish(3)) and not np.array_equal(out, finish(4))


def test_without_camera_effects_the_image_is_blurred_noised_and_rounded_only():
    image = _image()
    out = finish_image(image, blur=0.0, noise=0.0, rng=np.random.default_rng(0), camera=None)
    assert np.array_equal(out, np.round(image * 255).astype(np.uint8))


def test_grayscale_pictures_have_equal_channels():
    camera = sample_photometric(np.random.default_rng(0), PhotometricConfig(grayscale=1.0))
    out = finish_image(_image(), blur=0.0, noise=0.01, rng=np.random.default_rng(0), camera=camera)
    assert camera.grayscale and np.abs(out.astype(int) - out[..., :1]).max() <= 3  # JPEG chroma


def test_motion_kernel_is_a_normalised_line():
    kernel = motion_kernel(7, 0.0)
    assert kernel.shape == (7, 7) and np.isclose(kernel.sum(), 1.0)
    assert np.count_nonzero(kernel[3]) == 7 and np.count_nonzero(kernel) == 7


def test_edges_are_softened_only_on_outlines():
    segments = np.zeros((HEIGHT, WIDTH), dtype=np.uint16)
    segments[10:30, 20:40] = 1
    image = _image()
    out = soften_edges(image, segments, 1.0)
    changed = np.any(out != image, axis=2)
    assert changed[9:31, 19:41].any() and not changed[12:28, 22:38].any()
    assert not changed[:8].any() and out.dtype == image.dtype


# -- distractors and occlusion ---------------------------------------------------------------


def _sample(seed, pool, depths):
    return sample_distractors(
        np.random.default_rng(seed),
        DistractorConfig(behind=(2, 3), front=(1, 2)),
        height=HEIGHT,
        width=WIDTH,
        person_depths=depths,
        photos=pool,
        max_side=128,
    )


def test_distractors_are_deterministic_and_occluders_stand_among_the_people(pool):
    first, again = _sample(7, pool, [2.0, 5.0]), _sample(7, pool, [2.0, 5.0])
    assert len(first) == len(again)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.polygon, b.polygon) and a.depth == b.depth and a.photo == b.photo
    depths = [d.depth for d in first]
    behind = [d for d in depths if math.isinf(d)]
    assert 2 <= len(behind) <= 3 and depths[: len(behind)] == behind  # behind ones come first
    assert all(0 < d <= 5.0 for d in depths[len(behind) :]) and len(depths) > len(behind)
    for distractor in first:
        image = _image()
        drawn = draw_distractor(image, distractor)
        assert image.dtype == np.float32 and image.min() >= 0 and image.max() <= 1
        assert np.array_equal(drawn, polygon_mask(distractor, HEIGHT, WIDTH))


def _box(x0, y0, x1, y1, depth, pool=None):
    """An axis-aligned box over pixels [x0, x1) x [y0, y1), grey or photo-filled."""
    polygon = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    photo = None if pool is None else PhotoCrop(pool.paths[0], 128, 0.5, 0.5, 0.5, False)
    pattern = sample_outfit(np.random.default_rng(0)).top
    return Distractor(
        polygon=polygon / [WIDTH, HEIGHT],
        depth=depth,
        pattern=pattern,
        photo=photo,
        shading=np.array([1.0, 0.0, 0.0]),
    )


def test_box_covers_exactly_its_pixel_centres():
    mask = polygon_mask(_box(8, 4, 20, 16, 1.0), HEIGHT, WIDTH)
    expected = np.zeros((HEIGHT, WIDTH), dtype=bool)
    expected[4:16, 8:20] = True
    assert (mask != expected).sum() <= 2 * (12 + 12)  # at most the border pixels differ
    assert mask[5:15, 9:19].all() and mask.sum() >= 11 * 11


def test_an_occluder_takes_only_pixels_farther_than_itself(pool):
    depth = np.full((HEIGHT, WIDTH), np.inf, dtype=np.float32)
    depth[:, :32] = 3.0  # a "person" 3 m away on the left half
    depth[:, 32:48] = 1.0  # another one 1 m away
    image = _image()
    before = image.copy()
    hidden = draw_distractor(image, _box(0, 0, WIDTH, HEIGHT, 2.0, pool), depth)
    assert hidden[:, :32].all() and not hidden[:, 32:48].any() and hidden[:, 48:].all()
    assert np.array_equal(depth[:, 32:48], np.full((HEIGHT, 16), 1.0, dtype=np.float32))
    assert (depth[hidden] == 2.0).all()
    assert np.array_equal(image[~hidden], before[~hidden])


# -- plausible outfits -----------------------------------------------------------------------


def test_plausible_outfits_are_deterministic_and_print_photographs(pool):
    style = AppearanceConfig(photo_garments=1.0)
    a = sample_outfit(np.random.default_rng(2), style, pool, max_side=128)
    b = sample_outfit(np.random.default_rng(2), style, pool, max_side=128)
    assert a.top.texture == b.top.texture and a.top.texture is not None
    assert np.array_equal(a.skin, b.skin) and a.hair_back > 0
    rng = np.random.default_rng(0)
    count = 500
    parts = rng.integers(1, 25, size=count)
    uv = rng.uniform(0, 1, size=(count, 2))
    rest = rng.uniform(-0.5, 0.5, size=(count, 3))
    colours = albedo(a, parts, uv, rest)
    assert colours.shape == (count, 3) and colours.min() >= 0 and colours.max() <= 1
    assert np.array_equal(colours, albedo(b, parts, uv, rest))


def test_original_outfits_ignore_the_pool(pool):
    plain = sample_outfit(np.random.default_rng(3))
    assert plain.top.texture is None and plain.hair_back == 0.0
    with_pool = sample_outfit(np.random.default_rng(3), None, pool, max_side=128)
    assert np.array_equal(plain.skin, with_pool.skin) and with_pool.top.texture is None
