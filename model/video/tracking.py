"""Persistent person ids across frames, by instance-mask overlap.

Each frame's persons are matched to the live tracks greedily by mask IoU (highest pair first,
each person and track used once, pairs below ``iou_threshold`` never matched); an unmatched
person starts a new track. Ids start at 1 and are never reused. A track not matched for more
than ``max_age`` frames is dropped. IoU is computed on masks subsampled by ``stride``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class _Track:
    mask: np.ndarray  # (h, w) bool, the last matched mask, subsampled
    last_seen: int


class PersonTracker:
    def __init__(self, *, iou_threshold: float = 0.3, max_age: int = 5, stride: int = 4) -> None:
        if not 0.0 < iou_threshold <= 1.0 or max_age < 0 or stride < 1:
            raise ValueError(
                "need 0 < iou_threshold <= 1, max_age >= 0, stride >= 1, got "
                f"{iou_threshold}, {max_age}, {stride}"
            )
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.stride = stride
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self._frame = -1

    def update(self, masks: np.ndarray) -> np.ndarray:
        """The next frame's persons, (N, H, W) bool instance masks -> (N,) int64 track ids."""
        if masks.ndim != 3 or masks.dtype != np.bool_:
            raise ValueError(f"masks must be (N, H, W) bool, got {masks.shape} {masks.dtype}")
        self._frame += 1
        self._tracks = {
            track_id: track
            for track_id, track in self._tracks.items()
            if self._frame - track.last_seen <= self.max_age + 1
        }
        small = masks[:, :: self.stride, :: self.stride]
        track_ids = list(self._tracks)
        previous = [self._tracks[t].mask for t in track_ids]
        ious = mask_iou(small, np.stack(previous) if previous else small[:0])
        ids = np.zeros(len(masks), dtype=np.int64)
        for person, column in _greedy_pairs(ious, self.iou_threshold):
            ids[person] = track_ids[column]
        for person in np.flatnonzero(ids == 0).tolist():
            ids[person] = self._next_id
            self._next_id += 1
        for person, track_id in enumerate(ids.tolist()):
            self._tracks[track_id] = _Track(small[person], self._frame)
        return ids


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, h, w) and (M, h, w) bool masks -> (N, M) float64 IoU (0 for two empty masks)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    flat_a = a.reshape(len(a), -1).astype(np.float64)
    flat_b = b.reshape(len(b), -1).astype(np.float64)
    intersection = flat_a @ flat_b.T
    union = flat_a.sum(1)[:, None] + flat_b.sum(1)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _greedy_pairs(ious: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, column) pairs by decreasing IoU, each row and column at most once, IoU >= threshold."""
    pairs = []
    used_rows: set[int] = set()
    used_columns: set[int] = set()
    for flat in np.argsort(-ious, axis=None, kind="stable"):
        row, column = divmod(int(flat), ious.shape[1])
        if ious[row, column] < threshold:
            break
        if row not in used_rows and column not in used_columns:
            pairs.append((row, column))
            used_rows.add(row)
            used_columns.add(column)
    return pairs
