"""Encoders and decoders of ``DensePoseResult``: PNGs, base64, compressed NPZ.

Conventions follow Detectron's DensePose:

* an **IUV PNG** holds 3 × uint8 per pixel, stored channels 0, 1, 2 = ``I, U·255, V·255``
  (I in 0..24, 0 = background), cropped to the person's integer box;
* a **mask PNG** is a single-channel uint8 PNG with values 0 and 255, on the same crop.

Full-image maps: a person's crop pasted into an (H, W) canvas, zero elsewhere. When several
persons are merged into one map (``paste_parts_uv``), each pixel belongs to the person with
the **highest score** whose crop labels it (I > 0); ties go to the lower index. Lower-score
persons never overwrite higher-score ones.
"""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
import torch
from torch import Tensor

from model.config import NUM_PARTS
from model.structures import DensePoseResult


def to_base64(data: bytes) -> str:
    """Standard base64 (RFC 4648, with padding) as ASCII text."""
    return base64.b64encode(data).decode("ascii")


def _encode_png(array: np.ndarray) -> bytes:
    """(h, w) or (h, w, 3) uint8 -> PNG bytes; 3-channel arrays are given in cv2's BGR order."""
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {array.shape}")
    return buffer.tobytes()


def _decode_png(data: bytes, channels: int) -> np.ndarray:
    """PNG bytes -> (h, w) uint8 (channels=1) or (h, w, 3) uint8 in cv2's BGR order."""
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
    """One person's crop as a Detectron IUV PNG.

    Args:
        parts: (h, w) uint8, chart I in 0..24.
        uv: (2, h, w) float, U and V in [0, 1]; quantised to ``round(255 · value)``.

    Returns:
        PNG bytes whose stored channels 0, 1, 2 are I, U·255, V·255.
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
    # Stored order I, U, V = RGB; cv2 expects BGR, so hand it V, U, I.
    bgr = torch.stack([uv_uint8[1], uv_uint8[0], parts.cpu()], dim=-1)  # [h, w, 3]
    return _encode_png(bgr.numpy())


def decode_iuv_png(data: bytes) -> tuple[Tensor, Tensor]:
    """Inverse of ``encode_iuv_png``: PNG bytes -> parts (h, w) uint8, uv (2, h, w) float32."""
    bgr = torch.from_numpy(_decode_png(data, channels=3))  # [h, w, 3] = V, U, I
    parts = bgr[..., 2].clone()
    uv = torch.stack([bgr[..., 1], bgr[..., 0]]).float() / 255
    return parts, uv


def encode_mask_png(mask: Tensor) -> bytes:
    """(h, w) bool mask -> single-channel PNG with values 0 / 255."""
    if mask.ndim != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be (h, w) bool, got {tuple(mask.shape)} {mask.dtype}")
    return _encode_png(mask.cpu().numpy().astype(np.uint8) * 255)


def decode_mask_png(data: bytes) -> Tensor:
    """Inverse of ``encode_mask_png``: PNG bytes -> (h, w) bool (pixels above 127)."""
    return torch.from_numpy(_decode_png(data, channels=1) > 127)


def paste_person(result: DensePoseResult, index: int) -> tuple[Tensor, Tensor]:
    """One person's crop in a full-image canvas.

    Returns:
        parts (H, W) uint8 and uv (2, H, W) float32, zero outside the person's integer box.
    """
    height, width = result.masks.shape[-2:]
    x0, y0, x1, y1 = result.integer_boxes()[index].tolist()
    crop = (y1 - y0, x1 - x0)
    if result.parts[index].shape != crop or result.uv[index].shape != (2, *crop):
        raise ValueError(
            f"person {index}: crops must be {crop} and (2, *{crop}) to match box_int "
            f"{[x0, y0, x1, y1]}, got {tuple(result.parts[index].shape)} and "
            f"{tuple(result.uv[index].shape)}"
        )
    parts = torch.zeros(height, width, dtype=torch.uint8)
    uv = torch.zeros(2, height, width)
    parts[y0:y1, x0:x1] = result.parts[index].cpu()
    uv[:, y0:y1, x0:x1] = result.uv[index].detach().float().cpu()
    return parts, uv


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


def mask_owners(result: DensePoseResult) -> Tensor:
    """(H, W) int64: the person whose instance mask covers each pixel (-1 = none), overlaps
    resolved by ``claim_order``."""
    owner = torch.full(result.masks.shape[-2:], -1, dtype=torch.int64)
    for index in claim_order(result.scores):
        owner[result.masks[index].cpu() & (owner < 0)] = index
    return owner


def paste_owners(result: DensePoseResult) -> tuple[Tensor, Tensor, Tensor]:
    """``paste_parts_uv`` plus which person owns each pixel of it (``claim_order`` over the
    persons' labelled pixels, I > 0).

    Returns:
        owner (H, W) int64 (person index, -1 = none), parts (H, W) uint8, uv (2, H, W) float32.
    """
    height, width = result.masks.shape[-2:]
    owner = torch.full((height, width), -1, dtype=torch.int64)
    parts = torch.zeros(height, width, dtype=torch.uint8)
    uv = torch.zeros(2, height, width)
    for index in claim_order(result.scores):
        person_parts, person_uv = paste_person(result, index)
        claim = (person_parts > 0) & (owner < 0)
        owner[claim] = index
        parts[claim] = person_parts[claim]
        uv[:, claim] = person_uv[:, claim]
    return owner, parts, uv


def result_to_npz_bytes(result: DensePoseResult) -> bytes:
    """Compressed NPZ of a result, every per-person map at full image size (H, W).

    Arrays: ``boxes_xyxy`` (N, 4) float32, ``scores`` (N,) float32, ``masks`` (N, H, W) bool,
    ``parts`` (N, H, W) uint8 (chart I, 0 outside the person's box or M_dp), ``u`` and ``v``
    (N, H, W) float32 in [0, 1]. With N = 0 the maps keep their (0, H, W) shape.
    """
    height, width = result.masks.shape[-2:]
    pasted = [paste_person(result, i) for i in range(len(result))]
    empty_parts = torch.zeros(0, height, width, dtype=torch.uint8)
    parts = torch.stack([p for p, _ in pasted]) if pasted else empty_parts
    uv = torch.stack([q for _, q in pasted]) if pasted else torch.zeros(0, 2, height, width)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        boxes_xyxy=result.boxes_xyxy.detach().cpu().numpy().astype(np.float32),
        scores=result.scores.detach().cpu().numpy().astype(np.float32),
        masks=result.masks.cpu().numpy().astype(bool),
        parts=parts.numpy(),
        u=uv[:, 0].numpy(),
        v=uv[:, 1].numpy(),
    )
    return buffer.getvalue()


def npz_bytes_to_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Inverse of ``result_to_npz_bytes`` (never unpickles): array name -> array."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}
