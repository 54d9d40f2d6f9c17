"""Exact flow on the persons of a synthetic clip, from its dense labels: the best any flow could do.

The data engine labels every person pixel with its person (``dense_id``), chart I and chart
coordinates U, V. Two frames of one clip show the same surface point where the person, the
chart and (U, V) agree, so the flow of a person pixel p of frame a to frame b is q - p, q the
pixel of frame b with the same person and chart whose (U, V) is nearest to p's (a k-d tree
per person and chart, `scipy.spatial.cKDTree`). Where no such pixel lies within
``MAX_UV_DISTANCE`` (the point is hidden in frame b, or p is background) the fallback
estimator's flow is kept. ``benchmarks.video_jitter --flow oracle`` smooths with it, to tell
the error of the estimated flow from what the network's own outputs allow.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from model.temporal.flow import FlowEstimator, check_pairs

MAX_UV_DISTANCE = 0.05
"""A pixel with no same-chart pixel of the other frame this close in (U, V) keeps the fallback."""


Labels = tuple[np.ndarray, np.ndarray, np.ndarray]
"""One frame's dense labels: parts (H, W) uint8 (0 = background), uv (H, W, 2) float32,
instance (H, W) (the person's ``dense_id``, 0 = background)."""


def surface_flow(labels_a: Labels, labels_b: Labels) -> tuple[np.ndarray, np.ndarray]:
    """Where each person pixel of frame a shows its surface point in frame b.

    Returns the flow (2, H, W) float32 (dx, dy) in pixels and where it is known, (H, W) bool:
    person pixels of a whose person and chart b shows with a (U, V) within
    ``MAX_UV_DISTANCE``; elsewhere the flow is 0.
    """
    parts_a, uv_a, instance_a = labels_a
    parts_b, uv_b, instance_b = labels_b
    flow = np.zeros((2, *parts_a.shape), np.float32)
    matched = np.zeros(parts_a.shape, bool)
    for person in np.unique(instance_a[(instance_a > 0) & (parts_a > 0)]):
        for part in np.unique(parts_a[(instance_a == person) & (parts_a > 0)]):
            here = (instance_a == person) & (parts_a == part)
            there = (instance_b == person) & (parts_b == part)
            if not there.any():
                continue
            ys_b, xs_b = np.nonzero(there)
            distance, nearest = cKDTree(uv_b[there]).query(uv_a[here])
            close = distance <= MAX_UV_DISTANCE
            ys_a, xs_a = np.nonzero(here)
            ys_a, xs_a, nearest = ys_a[close], xs_a[close], nearest[close]
            flow[0, ys_a, xs_a] = xs_b[nearest] - xs_a
            flow[1, ys_a, xs_a] = ys_b[nearest] - ys_a
            matched[ys_a, xs_a] = True
    return flow, matched


class OracleFlow:
    """A ``FlowEstimator`` for the frames of one clip whose dense labels are known.

    ``frames``: the clip's (H0, W0, 3) uint8 RGB frames; ``labels``: each frame's ``Labels``
    at (H0, W0), as ``DensePoseCocoDataset.dense_labels`` returns them. The frames it is asked
    about may be resized copies (the video pipeline resizes to the network's input with
    ``cv2.INTER_AREA``); each is told apart by its bytes, its labels resized to match.
    """

    def __init__(
        self,
        frames: Sequence[np.ndarray],
        labels: Sequence[Labels],
        fallback: FlowEstimator,
    ) -> None:
        if len(frames) != len(labels):
            raise ValueError(f"{len(frames)} frames but {len(labels)} label maps")
        self._frames = list(frames)
        self._labels = list(labels)
        self._fallback = fallback
        self._index: dict[tuple[int, int], dict[bytes, int]] = {}
        self.pixels_matched = 0
        self.pixels_person = 0

    def __call__(self, sources: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> Tensor:
        height, width = check_pairs(sources, targets)
        flows = self._fallback(sources, targets).clone()  # (N, 2, H, W)
        for n, (source, target) in enumerate(zip(sources, targets, strict=True)):
            a, b = self._frame_of(source), self._frame_of(target)
            labels_a = labels_at(self._labels[a], height, width)
            labels_b = labels_at(self._labels[b], height, width)
            exact, matched = surface_flow(labels_a, labels_b)
            flows[n] = torch.where(
                torch.from_numpy(matched)[None], torch.from_numpy(exact), flows[n]
            )
            self.pixels_matched += int(matched.sum())
            self.pixels_person += int((labels_a[0] > 0).sum())
        return flows

    def _frame_of(self, image: np.ndarray) -> int:
        size = image.shape[:2]
        if size not in self._index:
            self._index[size] = {
                self._resized(frame, size).tobytes(): k for k, frame in enumerate(self._frames)
            }
        found = self._index[size].get(image.tobytes())
        if found is None:
            raise ValueError("a frame that is not one of the clip's was passed to the oracle flow")
        return found

    @staticmethod
    def _resized(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if frame.shape[:2] == size:
            return frame
        return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def labels_at(labels: Labels, height: int, width: int) -> Labels:
    """``labels`` at (height, width), nearest-neighbour (labels do not blend)."""
    if labels[0].shape == (height, width):
        return labels
    parts, uv, instance = (
        cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST) for m in labels
    )
    return parts, uv, instance
