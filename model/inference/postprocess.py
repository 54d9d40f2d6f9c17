"""Raw network output -> per-person dense pose at the resolution of the images as given.

Every map is resampled straight from its 1/4-scale logits to image pixels with RoIAlign
(bilinear, ``aligned=True``: output pixel k of a box starting at x0 samples the logit grid at
(x0 + k + 0.5) * scale / 4 - 0.5, i.e. pixel centres map to pixel centres).

Each person's mask and charts are resampled only inside the window of pixels whose bilinear
sample can exceed the mask threshold (``positive_window``); every pixel outside it is
background by construction. So a person costs in proportion to their own size, not the
image's: what the paper's cost-vs-persons claim needs. Every resample (mask, charts) runs in
bands of rows of at most ``RESAMPLE_BAND_PIXELS`` pixels, so its scratch memory is bounded
whatever the person's size; what stays is the result (``result_bytes``: persons × pixels;
the memory of a whole request: docs/service.md).

A ``Deadline`` is checked before each person and each band: work on an image nobody waits
for any more stops within one band (``DeadlineExceeded``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align

from model.config import NUM_PART_CLASSES
from model.inference.deadline import NO_DEADLINE, Deadline
from model.inference.preprocess import PreparedBatch
from model.structures import DDPOutput, DensePoseResult, integer_boxes

LOGIT_STRIDE = 4
RESAMPLE_BAND_PIXELS = 1 << 16
"""Pixels of one band of a resample (``_bands``): the scratch memory of post-processing is
about ``RESAMPLE_SCRATCH_BYTES_PER_PIXEL`` times this (35 MB), whatever the persons' sizes."""
RESAMPLE_SCRATCH_BYTES_PER_PIXEL = 540
"""Scratch of one band of charts, per pixel: its 75 resampled float32 channels (300 bytes),
the 2 × 25 U, V candidates stacked for the gather (200), the part argmax (12), M_dp (9), the
chosen U, V (16). Measured: 541 on a whole-image person resampled in one band."""


def _resample(logits: Tensor, boxes_xyxy: Tensor, size: tuple[int, int], scale: float) -> Tensor:
    """(B, C, h, w) logits, (K, 5) boxes [batch index, x0, y0, x1, y1] in image pixels ->
    (K, C, size) sampled at the boxes' pixel centres."""
    return roi_align(
        logits.float(),
        boxes_xyxy.float(),
        output_size=size,
        spatial_scale=scale / LOGIT_STRIDE,
        sampling_ratio=1,
        aligned=True,
    )


def positive_window(
    logits: Tensor, threshold: float, scale: float, height: int, width: int
) -> tuple[int, int, int, int] | None:
    """(h, w) logits at 1/4 of the network input -> the pixel window (x0, y0, x1, y1) of an
    image of (height, width) outside which every ``_resample`` sample is <= ``threshold``;
    None if no logit exceeds it.

    A bilinear sample exceeds the threshold only if one of its 2x2 source cells does; pixel
    p samples the cells around u = (p + 0.5) · scale / 4 - 0.5, so cells c_min..c_max reach
    the pixels with c_min - 1 < u < c_max + 1 (one pixel of margin on each side for rounding).
    """
    above = logits > threshold
    if not bool(above.any()):
        return None
    rows = above.any(dim=1).nonzero()[:, 0]
    cols = above.any(dim=0).nonzero()[:, 0]
    pixels_per_cell = LOGIT_STRIDE / scale

    def span(first: int, last: int, size: int) -> tuple[int, int]:
        start = math.floor((first - 0.5) * pixels_per_cell - 0.5) - 1
        stop = math.ceil((last + 1.5) * pixels_per_cell - 0.5) + 1
        return max(start, 0), min(stop, size)

    x0, x1 = span(int(cols[0]), int(cols[-1]), width)
    y0, y1 = span(int(rows[0]), int(rows[-1]), height)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _intersect(
    a: tuple[int, int, int, int], b: tuple[int, int, int, int]
) -> tuple[int, int, int, int] | None:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def charts_from_logits(
    iuv_logits: Tensor, dp_logits: Tensor, *, mask_threshold: float
) -> tuple[Tensor, Tensor]:
    """(3K, h, w) logits and (h, w) M_dp logits -> parts (h, w) uint8 and uv (2, h, w) float32.

    I = argmax over the K part logits where sigmoid(M_dp) > threshold, else 0; U, V are the
    regressed values of chart I, clipped to [0, 1] (0 where I = 0).
    """
    k = NUM_PART_CLASSES
    parts = iuv_logits[:k].max(dim=0).indices  # same as argmax; 7x faster on the CPU here
    parts[dp_logits.sigmoid() <= mask_threshold] = 0
    index = parts[None].expand(2, -1, -1)[:, None]  # [2, 1, h, w]
    uv_all = torch.stack([iuv_logits[k : 2 * k], iuv_logits[2 * k :]])  # [2, K, h, w]
    uv = uv_all.gather(1, index)[:, 0].clamp(0.0, 1.0)
    uv[:, parts == 0] = 0.0
    return parts.to(torch.uint8), uv


def _bands(
    window: tuple[int, int, int, int], deadline: Deadline, where: str
) -> Iterator[tuple[int, int]]:
    """The rows (top, bottom) of the window (x0, y0, x1, y1) in bands of at most
    ``RESAMPLE_BAND_PIXELS`` pixels (one row at least), ``deadline`` checked before each.

    Raises:
        DeadlineExceeded: before a band, once ``deadline`` has passed.
    """
    x0, y0, x1, y1 = window
    rows = max(RESAMPLE_BAND_PIXELS // (x1 - x0), 1)
    for top in range(y0, y1, rows):
        deadline.check(where)
        yield top, min(top + rows, y1)


def _charts_in_bands(
    iuv_logits: Tensor,
    dp_logits: Tensor,
    window: tuple[int, int, int, int],
    parts: Tensor,
    uv: Tensor,
    *,
    scale: float,
    mask_threshold: float,
    deadline: Deadline,
    where: str,
) -> None:
    """Charts of one person over its window (x0, y0, x1, y1) of image pixels, written into
    ``parts`` and ``uv``, resampled band by band (``_bands``).

    Args:
        iuv_logits: (1, 3K, h, w) logits of the person's image.
        dp_logits: (1, 1, h, w) the person's M_dp logits.
        parts: (y1 - y0, x1 - x0) uint8 on the CPU, written (a view of the person's crop).
        uv: (2, y1 - y0, x1 - x0) float32 on the CPU, written.

    Raises:
        DeadlineExceeded: before a band, once ``deadline`` has passed.
    """
    x0, y0, x1, _ = window
    for top, bottom in _bands(window, deadline, where):
        roi = dp_logits.new_tensor([[0.0, x0, top, x1, bottom]])
        size = (bottom - top, x1 - x0)
        iuv = _resample(iuv_logits, roi, size, scale)[0]  # [3K, band, width]
        dp = _resample(dp_logits, roi, size, scale)[0, 0]  # [band, width]
        band_parts, band_uv = charts_from_logits(iuv, dp, mask_threshold=mask_threshold)
        parts[top - y0 : bottom - y0] = band_parts.cpu()
        uv[:, top - y0 : bottom - y0] = band_uv.cpu()


def image_result(
    output: DDPOutput,
    batch: PreparedBatch,
    b: int,
    *,
    mask_threshold: float,
    deadline: Deadline = NO_DEADLINE,
) -> DensePoseResult:
    """Image ``b`` of the batch as a ``DensePoseResult`` in its original pixels.

    Raises:
        DeadlineExceeded: before a person or a band of one, once ``deadline`` has passed
            (an image without persons is answered whatever the deadline).
    """
    if not 0.0 < mask_threshold < 1.0:
        raise ValueError(f"mask_threshold must lie in (0, 1), got {mask_threshold}")
    height, width = (int(v) for v in batch.original_sizes[b])
    scale = float(batch.scales[b])
    dets = output.detections[output.detections.image_index == b]
    if len(dets) == 0:
        return DensePoseResult.empty(height, width)
    iuv_logits = output.iuv_logits[b : b + 1]
    boxes = dets.boxes_xyxy.float() / scale
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    threshold = math.log(mask_threshold / (1.0 - mask_threshold))  # sigmoid(x) > t  <=>  x > this
    masks = torch.zeros(len(dets), height, width, dtype=torch.bool)
    parts, uv = [], []
    for i, crop in enumerate(integer_boxes(boxes, height, width).tolist()):
        where = f"in post-processing, at person {i + 1} of {len(dets)}"
        deadline.check(where)
        mask_window = positive_window(dets.mask_logits[i, 0], threshold, scale, height, width)
        if mask_window is not None:
            x0, _, x1, _ = mask_window
            for top, bottom in _bands(mask_window, deadline, where):
                roi = boxes.new_tensor([[0.0, x0, top, x1, bottom]])
                size = (bottom - top, x1 - x0)
                logits = _resample(dets.mask_logits[i : i + 1, :1], roi, size, scale)
                masks[i, top:bottom, x0:x1] = (logits[0, 0] > threshold).cpu()
        crop_height, crop_width = crop[3] - crop[1], crop[2] - crop[0]
        person_parts = torch.zeros(crop_height, crop_width, dtype=torch.uint8)
        person_uv = torch.zeros(2, crop_height, crop_width)
        dp_window = positive_window(dets.mask_logits[i, 1], threshold, scale, height, width)
        window = None if dp_window is None else _intersect(crop, dp_window)
        if window is not None:
            x0, y0, x1, y1 = window
            rows, cols = slice(y0 - crop[1], y1 - crop[1]), slice(x0 - crop[0], x1 - crop[0])
            _charts_in_bands(
                iuv_logits,
                dets.mask_logits[i : i + 1, 1:],
                window,
                person_parts[rows, cols],  # views: the bands write through
                person_uv[:, rows, cols],
                scale=scale,
                mask_threshold=mask_threshold,
                deadline=deadline,
                where=where,
            )
        parts.append(person_parts)
        uv.append(person_uv)
    return DensePoseResult(
        boxes_xyxy=boxes.cpu(),
        scores=dets.scores.float().cpu(),
        masks=masks,
        parts=parts,
        uv=uv,
    )


def result_bytes(height: int, width: int, box_areas: Sequence[int]) -> int:
    """Bytes of the ``DensePoseResult`` of a (height, width) image whose N persons' integer
    boxes cover ``box_areas`` pixels: N·height·width of masks (bool) and 9 a box pixel
    (parts uint8, U and V float32); what post-processing keeps, besides its bounded scratch
    (``RESAMPLE_BAND_PIXELS``)."""
    return len(box_areas) * height * width + 9 * sum(box_areas)


def to_results(
    output: DDPOutput, batch: PreparedBatch, *, mask_threshold: float
) -> list[DensePoseResult]:
    """One ``DensePoseResult`` per image of the batch, in original image pixels."""
    return [
        image_result(output, batch, b, mask_threshold=mask_threshold) for b in range(len(batch))
    ]
