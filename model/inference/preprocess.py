"""Decoded images (``model.inference.images``) -> the padded, normalised batch the network
takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from model.config import InputConfig


@dataclass
class PreparedBatch:
    """A batch ready for ``DDP.forward``.

    Attributes:
        images: (B, 3, H, W) float32, normalised, zero-padded to a multiple of the divisibility.
        image_sizes: (B, 2) int64, (height, width) of each resized image inside the padding.
        original_sizes: (B, 2) int64, (height, width) of each image as given.
        scales: (B,) float32, resized size / original size.
    """

    images: Tensor
    image_sizes: Tensor
    original_sizes: Tensor
    scales: Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def image(self, b: int) -> PreparedBatch:
        """Image ``b`` as a batch of one: views of its rows, in the batch's padding."""
        if not 0 <= b < len(self):
            raise IndexError(f"image {b} of a batch of {len(self)}")
        rows = slice(b, b + 1)
        return PreparedBatch(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


def resize_scale(height: int, width: int, *, short_side: int, max_side: int) -> float:
    """Factor bringing the short side to ``short_side``, the long side at most ``max_side``."""
    return min(short_side / min(height, width), max_side / max(height, width))


def image_to_tensor(image_rgb: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1]."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.shape} {image_rgb.dtype}"
        )
    return torch.from_numpy(np.ascontiguousarray(image_rgb)).permute(2, 0, 1).float() / 255.0


def resize_normalise(image: Tensor, config: InputConfig) -> tuple[Tensor, float]:
    """(3, H, W) in [0, 1] -> resized (bilinear, antialiased) and normalised, and the scale.

    The resized size is ``round(H · scale)`` by ``round(W · scale)``: per axis the factor is
    that size over the original one (what targets must be rescaled by).
    """
    mean = torch.tensor(config.pixel_mean, device=image.device).view(3, 1, 1)
    std = torch.tensor(config.pixel_std, device=image.device).view(3, 1, 1)
    height, width = image.shape[-2:]
    scale = resize_scale(height, width, short_side=config.short_side, max_side=config.max_side)
    size = (max(round(height * scale), 1), max(round(width * scale), 1))
    x = image[None]
    if size != (height, width):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (x[0] - mean) / std, scale


def pad_images(images: Sequence[Tensor], divisor: int) -> Tensor:
    """(3, H_i, W_i) images -> (B, 3, H, W) zero-padded at the bottom/right, H, W multiples
    of ``divisor``."""
    pad_h = -(-max(x.shape[-2] for x in images) // divisor) * divisor
    pad_w = -(-max(x.shape[-1] for x in images) // divisor) * divisor
    batch = images[0].new_zeros(len(images), 3, pad_h, pad_w)
    for b, x in enumerate(images):
        batch[b, :, : x.shape[-2], : x.shape[-1]] = x
    return batch


def prepare_batch(
    images: Sequence[Tensor], config: InputConfig, *, device: torch.device | str = "cpu"
) -> PreparedBatch:
    """Resize (bilinear, antialiased), normalise and pad images (3, H_i, W_i) in [0, 1]."""
    prepared = [resize_normalise(image.to(device), config) for image in images]
    resized = [x for x, _ in prepared]
    return PreparedBatch(
        images=pad_images(resized, config.size_divisibility),
        image_sizes=torch.tensor([x.shape[-2:] for x in resized], dtype=torch.int64),
        original_sizes=torch.tensor([image.shape[-2:] for image in images], dtype=torch.int64),
        scales=torch.tensor([scale for _, scale in prepared], dtype=torch.float32),
    )
