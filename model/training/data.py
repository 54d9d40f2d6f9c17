"""A DensePose-COCO set as training batches at the network's input size."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from model.config import InputConfig
from model.data.loader import DensePoseCocoDataset
from model.inference.preprocess import image_to_tensor, pad_images, resize_normalise
from model.structures import DensePoseTargets


def _resize_masks(masks: Tensor, height: int, width: int) -> Tensor:
    """(N, h, w) bool -> (N, height, width) bool, nearest (pixel centres map to pixel centres)."""
    if masks.shape[-2:] == (height, width):
        return masks
    resized = F.interpolate(masks[:, None].float(), size=(height, width), mode="nearest-exact")
    return resized[:, 0] > 0.5


def rescale_targets(targets: DensePoseTargets, height: int, width: int) -> DensePoseTargets:
    """Targets of an image of the masks' size, for the same image resized to (height, width).

    Boxes and points scale by ``width / w`` in x and ``height / h`` in y, the factors the
    image's own resize uses; masks are resampled nearest.
    """
    h, w = targets.masks.shape[-2:]
    xy_scale = torch.tensor([width / w, height / h])
    return DensePoseTargets(
        boxes_xyxy=targets.boxes_xyxy * xy_scale.repeat(2),
        masks=_resize_masks(targets.masks, height, width),
        dp_masks=_resize_masks(targets.dp_masks, height, width),
        has_dp=targets.has_dp,
        point_instance=targets.point_instance,
        point_xy=targets.point_xy * xy_scale,
        point_part=targets.point_part,
        point_uv=targets.point_uv,
    )


class TrainingDataset(Dataset[tuple[Tensor, DensePoseTargets]]):
    """(image (3, H, W) float32 resized and normalised as ``prepare_batch`` does, its targets
    in the same pixel frame) for each image of a DensePose-COCO set."""

    def __init__(self, coco: DensePoseCocoDataset, config: InputConfig) -> None:
        self.coco = coco
        self.config = config

    def __len__(self) -> int:
        return len(self.coco)

    def __getitem__(self, index: int) -> tuple[Tensor, DensePoseTargets]:
        image_rgb, targets = self.coco[index]
        image, _ = resize_normalise(image_to_tensor(image_rgb), self.config)
        return image, rescale_targets(targets, image.shape[-2], image.shape[-1])


@dataclass
class TrainBatch:
    """Attributes:
    images: (B, 3, H, W) float32, normalised, zero-padded to multiples of the divisibility.
    targets: B targets in the padded frame (masks unpadded: ``compute_losses`` pads them).
    """

    images: Tensor
    targets: list[DensePoseTargets]


def collate(
    items: Sequence[tuple[Tensor, DensePoseTargets]], *, size_divisibility: int
) -> TrainBatch:
    """Pad the images of ``items`` to one size divisible by ``size_divisibility``."""
    return TrainBatch(
        images=pad_images([image for image, _ in items], size_divisibility),
        targets=[targets for _, targets in items],
    )


class StepSampler(Sampler[int]):
    """Endless indices: epoch e is a permutation drawn from ``seed + e``; the stream starts at
    ``start`` (items already seen), so a resumed run sees what an unbroken one would."""

    def __init__(self, size: int, *, seed: int, start: int = 0) -> None:
        if size < 1:
            raise ValueError(f"need at least one training image, got {size}")
        self.size = size
        self.seed = seed
        self.start = start

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.size)
        while True:
            order = torch.randperm(
                self.size, generator=torch.Generator().manual_seed(self.seed + epoch)
            )
            yield from order[offset:].tolist()
            epoch, offset = epoch + 1, 0
