"""Dense label maps on disk: one compressed ``.npz`` per image.

Arrays: ``parts`` (H, W) uint8 chart I; ``u``, ``v`` (H, W) uint16 = round(value · 65535);
``instance`` (H, W) uint8, 0 = background, else the annotations' ``dense_id``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

UV_SCALE = 65535


def write_dense(path: Path, parts: np.ndarray, uv: np.ndarray, instance: np.ndarray) -> None:
    """Save (H, W) parts, (H, W, 2) float uv in [0, 1] and (H, W) instance ids."""
    quantised = np.round(np.clip(uv, 0, 1) * UV_SCALE).astype(np.uint16)
    np.savez_compressed(
        path, parts=parts, u=quantised[..., 0], v=quantised[..., 1], instance=instance
    )


def read_dense(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(parts (H, W) uint8, uv (H, W, 2) float32, instance (H, W) uint8)."""
    with np.load(path) as data:
        uv = np.stack([data["u"], data["v"]], axis=-1).astype(np.float32) / UV_SCALE
        return data["parts"], uv, data["instance"]
