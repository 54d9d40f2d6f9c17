"""Encoders and decoders of ``DensePoseResult``: PNGs, base64, the NPZ's frame arrays.

Conventions follow DensePose (docs/outputs.md):

* an **IUV PNG** holds 3 × uint8 per pixel, ``I, U·255, V·255`` (I in 0..24, 0 = background;
  U, V rounded), written as the original DensePose tools write it, ``cv2.imwrite`` of an
  [I, U, V] array: in the file **blue = I, green = U, red = V**, so ``cv2.imread(p)[..., 0]``
  is I, and Pillow's ``np.asarray(Image.open(p))`` is [V, U, I];
* a **mask PNG** is a single-channel uint8 PNG with values 0 and 255;
* per person, both are cropped to the person's integer box.

Full-image maps: the persons' crops pasted into an (H, W) canvas, zero elsewhere. When several
persons are merged into one map (``paste_parts_uv``), each pixel belongs to the person with
the **highest score** whose crop labels it (I > 0); ties go to the lower index. Lower-score
persons never overwrite higher-score ones. The NPZ (``model.outputs.npz``) holds these merged
maps and the instance map of ``mask_owners``.

The functions that loop over persons take a ``Deadline`` (``model.inference.deadline``),
checked before each person: an answer nobody waits for any more stops within one person.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np
import torch
from torch import Tensor

from model.config import NUM_PARTS
from model.inference.deadline import NO_DEADLINE, Deadline
from model.outputs.npz import FrameArrays, frame_npz_bytes
from model.structures import DensePoseResult


def to_base64(data: bytes) -> str:
    """Standard base64 (RFC 4648, with padding) as ASCII text."""
    return base64.b64encode(data).decode("ascii")


def _encode_png(array: np.ndarray) -> bytes:
    """(h, w) or (h, w, 3) uint8 -> PNG bytes; channel 0 of a 3-channel array is stored as
    blue (cv2's BGR order)."""
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {array.shape}")
    return buffer.tobytes()


def _decode_png(data: bytes, channels: int) -> np.ndarray:
    """PNG bytes -> (h, w) uint8 (channels=1) or (h, w, 3) uint8 in cv2's BGR order (channel 0
    = blue)."""
    array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError("not a decodable PNG")
    got = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype != np.uint8 or got != channels:
        raise ValueError(
            f"expected an 8-bit PNG with {channels} channel(s), got {got} channel(s) "
            f"of {array.dtype}"
        )
    return array


def encode_iuv_png(parts: Tensor, uv: Tensor) -> bytes:
    """A crop (or a merged full-image map) as a DensePose IUV PNG.

    Args:
        parts: (h, w) uint8, chart I in 0..24.
        uv: (2, h, w) float, U and V in [0, 1]; quantised to ``round(255 · value)``.

    Returns:
        PNG bytes with blue = I, green = U·255, red = V·255 (``cv2.imread(p)[..., 0]`` = I).
    """
    if parts.ndim != 2 or parts.dtype != torch.uint8:
        raise ValueError(f"parts must be (h, w) uint8, got {tuple(parts.shape)} {parts.dtype}")
    if uv.shape != (2, *parts.shape) or not uv.is_floating_point():
        raise ValueError(
            f"uv must be float (2, {parts.shape[0]}, {parts.shape[1]}), "
            f"got {tuple(uv.shape)} {uv.dtype}"
        )
    if parts.numel() and int(parts.max()) > NUM_PARTS:
        raise ValueError(f"parts must be in 0..{NUM_PARTS}, got max {int(parts.max())}")
    uv_uint8 = (uv.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    iuv = torch.stack([parts.cpu(), uv_uint8[0], uv_uint8[1]], dim=-1)  # [h, w, 3] = B, G, R
    return _encode_png(iuv.numpy())


def decode_iuv_png(data: bytes) -> tuple[Tensor, Tensor]:
    """Inverse of ``encode_iuv_png``: PNG bytes -> parts (h, w) uint8, uv (2, h, w) float32."""
    iuv = torch.from_numpy(_decode_png(data, channels=3))  # [h, w, 3] = I, U, V
    parts = iuv[..., 0].clone()
    uv = iuv[..., 1:].permute(2, 0, 1).float() / 255
    return parts, uv


def encode_mask_png(mask: Tensor) -> bytes:
    """(h, w) bool mask -> single-channel PNG with values 0 / 255."""
    if mask.ndim != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be (h, w) bool, got {tuple(mask.shape)} {mask.dtype}")
    return _encode_png(mask.cpu().numpy().astype(np.uint8) * 255)


def decode_mask_png(data: bytes) -> Tensor:
    """Inverse of ``encode_mask_png``: PNG bytes -> (h, w) bool (pixels above 127)."""
    return torch.from_numpy(_decode_png(data, channels=1) > 127)


def _crops(result: DensePoseResult, index: int, box: list[int]) -> tuple[Tensor, Tensor]:
    """Person ``index``'s parts (h, w) uint8 and uv (2, h, w) float32 on the CPU, checked
    against its integer box ``x0, y0, x1, y1``."""
    x0, y0, x1, y1 = box
    crop = (y1 - y0, x1 - x0)
    if result.parts[index].shape != crop or result.uv[index].shape != (2, *crop):
        raise ValueError(
            f"person {index}: crops must be {crop} and (2, *{crop}) to match box_int "
            f"{box}, got {tuple(result.parts[index].shape)} and "
            f"{tuple(result.uv[index].shape)}"
        )
    return result.parts[index].cpu(), result.uv[index].detach().float().cpu()


def paste_parts_uv(result: DensePoseResult) -> tuple[Tensor, Tensor, Tensor]:
    """All persons merged into full-image maps; see the module docstring for the overlap rule.

    Returns:
        parts (H, W) uint8, u (H, W) float32, v (H, W) float32; 0 where no person is labelled.
    """
    _, parts, uv = paste_owners(result)
    return parts, uv[0], uv[1]


def claim_order(scores: Tensor) -> list[int]:
    """The order in which persons claim pixels: highest score first, ties to the lower index.

    Every map that gives each pixel one owner (the merged IUV map, instance maps of images and
    video frames) lets the first claimant in this order keep the pixel.
    """
    return torch.sort(scores.cpu(), descending=True, stable=True).indices.tolist()


def mask_owners(result: DensePoseResult, *, deadline: Deadline = NO_DEADLINE) -> Tensor:
    """(H, W) int64: the person whose instance mask covers each pixel (-1 = none), overlaps
    resolved by ``claim_order``.

    Raises:
        DeadlineExceeded: before a person, once ``deadline`` has passed.
    """
    owner = np.full(result.masks.shape[-2:], -1, dtype=np.int64)
    masks = result.masks.cpu().numpy()
    order = reversed(claim_order(result.scores))  # the first claimant writes last
    for step, index in enumerate(order):
        deadline.check(f"in the instance map, at person {step + 1} of {len(result)}")
        owner[masks[index]] = index
    return torch.from_numpy(owner)


def paste_owners(
    result: DensePoseResult, *, deadline: Deadline = NO_DEADLINE
) -> tuple[Tensor, Tensor, Tensor]:
    """``paste_parts_uv`` plus which person owns each pixel of it (``claim_order`` over the
    persons' labelled pixels, I > 0).

    Returns:
        owner (H, W) int64 (person index, -1 = none), parts (H, W) uint8, uv (2, H, W) float32.

    Raises:
        DeadlineExceeded: before a person, once ``deadline`` has passed.
    """
    height, width = result.masks.shape[-2:]
    owner = np.full((height, width), -1, dtype=np.int64)
    parts = np.zeros((height, width), dtype=np.uint8)
    uv = np.zeros((2, height, width), dtype=np.float32)
    boxes = result.integer_boxes().tolist()
    order = reversed(claim_order(result.scores))  # the first claimant writes last
    for step, index in enumerate(order):
        deadline.check(f"in the merged maps, at person {step + 1} of {len(result)}")
        x0, y0, x1, y1 = boxes[index]
        person_parts, person_uv = (crop.numpy() for crop in _crops(result, index, boxes[index]))
        labelled = person_parts > 0  # [h, w]; the slices below are views: they write through
        owner[y0:y1, x0:x1][labelled] = index
        parts[y0:y1, x0:x1][labelled] = person_parts[labelled]
        uv[:, y0:y1, x0:x1][:, labelled] = person_uv[:, labelled]
    return torch.from_numpy(owner), torch.from_numpy(parts), torch.from_numpy(uv)


def frame_arrays(
    result: DensePoseResult,
    track_ids: np.ndarray | None = None,
    *,
    deadline: Deadline = NO_DEADLINE,
) -> FrameArrays:
    """A result as one frame of the NPZ: the merged maps of ``paste_parts_uv``, the instance
    map of ``mask_owners`` (i + 1 = person i), and the persons in the result's order.

    Args:
        track_ids: (N,) int, the persons' track ids in a video; None: 1..N (an image).

    Raises:
        DeadlineExceeded: before a person, once ``deadline`` has passed.
    """
    owner = mask_owners(result, deadline=deadline).numpy()
    _, parts, uv = paste_owners(result, deadline=deadline)
    ids = np.arange(1, len(result) + 1) if track_ids is None else np.asarray(track_ids)
    return FrameArrays(
        parts=parts.numpy(),
        u=uv[0].numpy().astype(np.float16),
        v=uv[1].numpy().astype(np.float16),
        instances=(owner + 1).astype(np.uint16),
        boxes_xyxy=result.boxes_xyxy.detach().cpu().numpy().astype(np.float32),
        scores=result.scores.detach().cpu().numpy().astype(np.float32),
        track_ids=ids.astype(np.int32),
    )


def result_to_npz_bytes(result: DensePoseResult, *, deadline: Deadline = NO_DEADLINE) -> bytes:
    """The NPZ of one image (``model.outputs.npz``: a clip of one frame; track ids 1..N).

    Raises:
        DeadlineExceeded: before a person or the compression, once ``deadline`` has passed.
    """
    arrays = frame_arrays(result, deadline=deadline)
    deadline.check("before the NPZ is compressed")
    return frame_npz_bytes(arrays)
