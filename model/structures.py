"""Data passed between the stages of DDP, one dataclass per stage.

Dimension letters: B images, N instances, M active sparse sites, K = 25 part classes,
C channels, P points, H, W (input pixels unless a docstring says otherwise).
Boxes are ``xyxy`` in absolute pixels of the image they refer to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


def _tensors_to(obj: object, device: torch.device | str) -> dict[str, object]:
    return {
        f.name: (v.to(device) if isinstance(v := getattr(obj, f.name), Tensor) else v)
        for f in fields(obj)  # type: ignore[arg-type]
    }


@dataclass
class DensePoseTargets:
    """Ground truth of one (resized, unpadded) image.

    Attributes:
        boxes_xyxy: (N, 4) float32, person boxes in pixels.
        masks: (N, H, W) bool, instance masks.
        dp_masks: (N, H, W) bool, dense-pose foreground of each person (DensePose-COCO's
            ``dp_masks``); equal to ``masks`` for synthetic people.
        has_dp: (N,) bool, whether the person carries dense-pose annotation at all.
        point_instance: (P,) int64, index into the N persons of each annotated point
            (-1 for a background point, which belongs to nobody).
        point_xy: (P, 2) float32, point positions (x, y) in pixels (pixel centres at +0.5).
        point_part: (P,) int64, chart I in 0..24 (0 = a background point: I loss only).
        point_uv: (P, 2) float32, chart coordinates U, V in [0, 1] (ignored where I = 0).
    """

    boxes_xyxy: Tensor
    masks: Tensor
    dp_masks: Tensor
    has_dp: Tensor
    point_instance: Tensor
    point_xy: Tensor
    point_part: Tensor
    point_uv: Tensor

    def __len__(self) -> int:
        return int(self.boxes_xyxy.shape[0])

    def to(self, device: torch.device | str) -> DensePoseTargets:
        return DensePoseTargets(**_tensors_to(self, device))  # type: ignore[arg-type]

    @staticmethod
    def empty(height: int, width: int) -> DensePoseTargets:
        """An image with no person: every tensor has a zero-length first dimension."""
        return DensePoseTargets(
            boxes_xyxy=torch.zeros(0, 4),
            masks=torch.zeros(0, height, width, dtype=torch.bool),
            dp_masks=torch.zeros(0, height, width, dtype=torch.bool),
            has_dp=torch.zeros(0, dtype=torch.bool),
            point_instance=torch.zeros(0, dtype=torch.int64),
            point_xy=torch.zeros(0, 2),
            point_part=torch.zeros(0, dtype=torch.int64),
            point_uv=torch.zeros(0, 2),
        )


@dataclass
class Detections:
    """Persons found in a batch, flattened over images (the output of the instance branch).

    Attributes:
        image_index: (N,) int64, which image of the batch each person is in.
        boxes_xyxy: (N, 4) float32, in padded-input pixels.
        scores: (N,) float32, sqrt(classification * centerness).
        mask_logits: (N, 2, H/4, W/4) float32, channel 0 = M_ins, 1 = M_dp (logits).
    """

    image_index: Tensor
    boxes_xyxy: Tensor
    scores: Tensor
    mask_logits: Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __getitem__(self, item: Tensor | slice | int) -> Detections:
        if isinstance(item, int):
            item = slice(item, item + 1)
        return Detections(**{f.name: getattr(self, f.name)[item] for f in fields(self)})

    def to(self, device: torch.device | str) -> Detections:
        return Detections(**_tensors_to(self, device))  # type: ignore[arg-type]

    def of_image(self, b: int) -> Detections:
        """The persons of image ``b`` as the detections of a batch of one (image index 0);
        zero-length if it has none."""
        mine = self[self.image_index == b]
        return replace(mine, image_index=torch.zeros_like(mine.image_index))


@dataclass
class DDPOutput:
    """Raw output of ``DDP.forward`` for a padded batch.

    Attributes:
        detections: persons of all images, with their two mask logits at 1/4 scale.
        iuv_logits: (B, 3K, H/4, W/4) float32, the paper's C: K part logits, K U, K V;
            zero outside ``active``.
        active: (B, H/4, W/4) bool, the sites the IUV branch computed (M_fg).
        image_sizes: (B, 2) int64, (height, width) of each image before padding.
    """

    detections: Detections
    iuv_logits: Tensor
    active: Tensor
    image_sizes: Tensor

    def __len__(self) -> int:
        return int(self.image_sizes.shape[0])

    def image(self, b: int) -> DDPOutput:
        """Image ``b`` as the output of a batch of one: its persons (``Detections.of_image``)
        and views of its rows of ``iuv_logits``, ``active`` and ``image_sizes``."""
        if not 0 <= b < len(self):
            raise IndexError(f"image {b} of a batch of {len(self)}")
        rows = slice(b, b + 1)
        return DDPOutput(
            detections=self.detections.of_image(b),
            iuv_logits=self.iuv_logits[rows],
            active=self.active[rows],
            image_sizes=self.image_sizes[rows],
        )


@dataclass
class DensePoseResult:
    """Per-person dense pose of one image, at the resolution of the image as given.

    Attributes:
        boxes_xyxy: (N, 4) float32, person boxes in image pixels.
        scores: (N,) float32 in [0, 1].
        masks: (N, H, W) bool, instance masks (M_ins) over the whole image.
        parts: N tensors (h_i, w_i) uint8, chart I in 0..24 inside each integer box
            ``box_i = floor(x0), floor(y0), ceil(x1), ceil(y1)`` clipped to the image
            (0 outside the person's M_dp).
        uv: N tensors (2, h_i, w_i) float32, U and V in [0, 1] on the same crops (0 where I = 0).
    """

    boxes_xyxy: Tensor
    scores: Tensor
    masks: Tensor
    parts: list[Tensor]
    uv: list[Tensor]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, indices: Sequence[int]) -> DensePoseResult:
        """The persons at ``indices``, in that order."""
        keep = list(indices)
        return DensePoseResult(
            boxes_xyxy=self.boxes_xyxy[keep],
            scores=self.scores[keep],
            masks=self.masks[keep],
            parts=[self.parts[i] for i in keep],
            uv=[self.uv[i] for i in keep],
        )

    def best(
        self, *, score_threshold: float | None = None, max_persons: int | None = None
    ) -> DensePoseResult:
        """The persons scoring at least ``score_threshold`` (None: all, i.e. the network's own
        ``detection_score_threshold``, already applied), best first, at most ``max_persons``."""
        order = torch.argsort(self.scores, descending=True, stable=True)
        if score_threshold is not None:
            order = order[self.scores[order] >= score_threshold]
        return self.select(order[:max_persons].tolist())

    def integer_boxes(self) -> Tensor:
        """(N, 4) int64 ``x0, y0, x1, y1`` of the crops ``parts`` and ``uv`` cover."""
        return integer_boxes(self.boxes_xyxy, self.masks.shape[-2], self.masks.shape[-1])

    @staticmethod
    def empty(height: int, width: int) -> DensePoseResult:
        return DensePoseResult(
            boxes_xyxy=torch.zeros(0, 4),
            scores=torch.zeros(0),
            masks=torch.zeros(0, height, width, dtype=torch.bool),
            parts=[],
            uv=[],
        )


def integer_boxes(boxes_xyxy: Tensor, height: int, width: int) -> Tensor:
    """(N, 4) float boxes -> (N, 4) int64 boxes covering them, clipped, at least 1 px wide."""
    x0 = boxes_xyxy[:, 0].floor().clamp(0, width - 1)
    y0 = boxes_xyxy[:, 1].floor().clamp(0, height - 1)
    x1 = torch.maximum(boxes_xyxy[:, 2].ceil().clamp(max=width), x0 + 1)
    y1 = torch.maximum(boxes_xyxy[:, 3].ceil().clamp(max=height), y0 + 1)
    return torch.stack([x0, y0, x1, y1], dim=1).long()
