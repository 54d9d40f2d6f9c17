import numpy as np
import pytest
import torch

from model.config import InputConfig
from model.inference.preprocess import image_to_tensor, prepare_batch, resize_scale


def test_resize_scale_respects_short_and_long_side():
    assert resize_scale(100, 200, short_side=50, max_side=1000) == 0.5
    assert resize_scale(100, 1000, short_side=100, max_side=500) == 0.5


def test_batch_is_padded_normalised_and_records_sizes():
    config = InputConfig(short_side=64, max_side=96, size_divisibility=32)
    images = [torch.ones(3, 32, 48), torch.zeros(3, 64, 64)]
    batch = prepare_batch(images, config)
    assert batch.images.shape == (2, 3, 64, 96)
    assert batch.image_sizes.tolist() == [[64, 96], [64, 64]]
    assert batch.original_sizes.tolist() == [[32, 48], [64, 64]]
    torch.testing.assert_close(batch.scales, torch.tensor([2.0, 1.0]))
    # white -> (1 - 0.5) / 0.5 = 1; padding stays 0
    assert torch.allclose(batch.images[0, :, :64, :96], torch.ones(1))
    assert batch.images[1, :, :, 64:].abs().sum() == 0


def test_image_to_tensor_rejects_wrong_layout():
    with pytest.raises(ValueError, match="uint8 RGB"):
        image_to_tensor(np.zeros((4, 4), dtype=np.uint8))
    assert image_to_tensor(np.full((2, 3, 3), 255, dtype=np.uint8)).shape == (3, 2, 3)


def test_the_views_of_a_batch_equal_preparing_each_image_alone():
    config = InputConfig(short_side=32, max_side=64, size_divisibility=32)
    images = [torch.rand(3, 16, 24, generator=torch.Generator().manual_seed(b)) for b in range(2)]
    batch = prepare_batch(images, config)
    assert len(batch) == 2
    for b, image in enumerate(images):
        view, alone = batch.image(b), prepare_batch([image], config)
        assert len(view) == 1
        for name in ("images", "image_sizes", "original_sizes", "scales"):
            assert torch.equal(getattr(view, name), getattr(alone, name)), name


def test_a_view_keeps_the_batch_padding():
    config = InputConfig(short_side=32, max_side=96, size_divisibility=32)
    batch = prepare_batch([torch.ones(3, 32, 64), torch.ones(3, 32, 32)], config)
    view = batch.image(1)
    assert view.images.shape == (1, 3, 32, 64)
    assert torch.equal(view.images, batch.images[1:2])
    assert view.image_sizes.tolist() == [[32, 32]] and view.original_sizes.tolist() == [[32, 32]]
    with pytest.raises(IndexError, match="image 2 of a batch of 2"):
        batch.image(2)
