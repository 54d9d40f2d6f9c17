"""The paper's 2D temporal smoothing (section 4, eq. 5-6) on a stream of frames.

For frame t and offsets j in -r..r (j != 0), the logits C of frame t+j are warped to frame t
with the flow t -> t+j (eq. 5) and summed with weights alpha_j (eq. 6):

    C_temp(p) = sum_j alpha_j v_j(p) C_(t+j->t)(p) / sum_j alpha_j v_j(p)

v_j(p) is 1 where frame t+j has a valid vote at p (``model.temporal.warp.warp_logits``: its
source is in the frame, reachable, on active cells; for j = 0: p is active). Renormalising
over the valid voters keeps the paper's weights where all vote and handles the clip's ends
(fewer neighbours) and occlusions alike. Cells where nobody votes stay 0 and inactive; cells
inactive in frame t but voted for by neighbours become active (the neighbours fill them in).

**Flows.** Each adjacent pair (k, k+1) has its flows k->k+1 and k+1->k estimated exactly
once, when frame k+1 arrives (all pairs of a pushed batch in one estimator call); the flow
t -> t+j for |j| > 1 is the composition of the adjacent ones (``chain_flows``), so a window of
radius r costs two flow estimates per frame rather than 2r. Composition accumulates the
adjacent flows' errors, and a cell that leaves the frame on the way does not vote.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from model.temporal.flow import FlowEstimator
from model.temporal.warp import chain_flows, resample_flow, warp_logits


@dataclass(frozen=True)
class SmoothingConfig:
    """Window and weights of eq. 6, and the optional occlusion check.

    The paper: r = 2, alpha = [0.2, 0.2, 0.2, 0.2, 0.2] (centre included). Only the ratio of
    the centre and neighbour weights matters (weights are renormalised per cell).
    """

    radius: int = 2
    centre_weight: float = 0.2
    neighbour_weight: float = 0.2
    occlusion_check: bool = False
    """Also drop votes failing the forward-backward flow check (``warp.consistent``)."""
    consistency_alpha: float = 0.01
    consistency_beta: float = 0.5
    """In logit cells squared (a cell is 4 input pixels)."""

    def __post_init__(self) -> None:
        if self.radius < 0:
            raise ValueError(f"radius must be >= 0, got {self.radius}")
        if not (self.centre_weight > 0 and self.neighbour_weight > 0):
            raise ValueError(
                f"weights must be > 0, got centre {self.centre_weight}, "
                f"neighbour {self.neighbour_weight}"
            )


@dataclass
class SmoothedFrame:
    """Frame ``index`` of the stream after eq. 6.

    Attributes:
        logits: (C, h, w) float32 on the grid of the pushed logits, 0 where ``active`` is False.
        active: (h, w) bool, cells with at least one valid vote.
    """

    index: int
    logits: Tensor
    active: Tensor


def weighted_vote(votes: Sequence[tuple[float, Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Eq. 6 renormalised per cell: (weight, logits (C, h, w) finite, valid (h, w) bool) per
    voter, at least one -> logits (C, h, w) float32 (0 where nobody votes) and (h, w) bool
    where somebody does."""
    numerator: Tensor | None = None
    denominator = torch.zeros_like(votes[0][2], dtype=torch.float32)
    for weight, logits, valid in votes:
        cell_weight = valid.float() * weight
        if numerator is None:
            numerator = logits.float() * cell_weight
        else:
            numerator.addcmul_(logits.float(), cell_weight)  # in place: memory-bound here
        denominator += cell_weight
    assert numerator is not None
    voted = denominator > 0
    scale = torch.where(voted, denominator.clamp_min(1e-12).reciprocal(), 0.0)
    return numerator.mul_(scale), voted


class TemporalSmoother:
    """Streams frames through eq. 5-6, holding only the window's logits and flows.

    ``push`` frames in order, in batches of any size; it returns the frames whose window is
    complete (frame t once t + r has been pushed), ``finish`` the rest. With r = 0 frames pass
    through unchanged and no flow is estimated.

    ``seconds`` accumulates ``flow`` (estimation and resampling) and ``smoothing``.
    """

    def __init__(self, flow: FlowEstimator, config: SmoothingConfig | None = None) -> None:
        self.flow = flow
        self.config = config or SmoothingConfig()
        self.seconds = {"flow": 0.0, "smoothing": 0.0}
        self._logits: dict[int, Tensor] = {}
        self._active: dict[int, Tensor] = {}
        self._forward: dict[int, Tensor] = {}  # k -> flow k -> k+1 on the grid
        self._backward: dict[int, Tensor] = {}  # k -> flow k+1 -> k on the grid
        self._last_frame: np.ndarray | None = None
        self._extent: tuple[float, float] | None = None
        self._pushed = 0
        self._emitted = 0

    def push(
        self,
        frames_rgb: Sequence[np.ndarray],
        logits: Tensor,
        active: Tensor,
        *,
        extent: tuple[float, float],
    ) -> list[SmoothedFrame]:
        """Add the next frames.

        Args:
            frames_rgb: B (H, W, 3) uint8 frames the flow is estimated on (any resolution; they
                cover ``extent`` of the logit grid).
            logits: (B, C, h, w), zero outside ``active``.
            active: (B, h, w) bool.
            extent: (height, width) of the frames on the logit grid, in cells; the same for
                every frame of the stream.
        """
        count = len(frames_rgb)
        if logits.ndim != 4 or logits.shape[0] != count or active.shape != logits[:, 0].shape:
            raise ValueError(
                f"need B frames, (B, C, h, w) logits and (B, h, w) active for B = {count}, got "
                f"{tuple(logits.shape)} and {tuple(active.shape)}"
            )
        if self._extent is not None and extent != self._extent:
            raise ValueError(f"extent changed within a stream: {self._extent} -> {extent}")
        self._extent = extent
        if self.config.radius > 0:
            self._add_flows(frames_rgb, logits.shape[-2:], logits.device)
        for b in range(count):
            self._logits[self._pushed + b] = logits[b].float()
            self._active[self._pushed + b] = active[b]
        self._pushed += count
        return self._emit(final=False)

    def finish(self) -> list[SmoothedFrame]:
        """The frames still waiting for neighbours that will never come (the clip's end)."""
        return self._emit(final=True)

    def _add_flows(
        self, frames: Sequence[np.ndarray], grid: torch.Size, device: torch.device
    ) -> None:
        """Estimate both flows of every new adjacent pair in one call and keep them on the grid."""
        start = time.perf_counter()
        # pairs (k, k+1) for every new frame k+1 that has a predecessor; k from ``first``
        first = self._pushed - 1 if self._last_frame is not None else self._pushed
        chain = [self._last_frame, *frames] if self._last_frame is not None else list(frames)
        self._last_frame = frames[-1]
        previous, following = chain[:-1], chain[1:]
        if previous:
            flows = self.flow([*previous, *following], [*following, *previous])  # [2P, 2, H, W]
            assert self._extent is not None
            height, width = frames[0].shape[:2]
            cells_per_pixel = (self._extent[0] / height, self._extent[1] / width)
            size = (int(grid[0]), int(grid[1]))
            for i in range(len(previous)):
                forward, backward = flows[i], flows[len(previous) + i]
                self._forward[first + i] = resample_flow(forward.to(device), size, cells_per_pixel)
                self._backward[first + i] = resample_flow(
                    backward.to(device), size, cells_per_pixel
                )
        self.seconds["flow"] += time.perf_counter() - start

    def _emit(self, *, final: bool) -> list[SmoothedFrame]:
        radius = self.config.radius
        ready = []
        while self._emitted < self._pushed and (final or self._emitted + radius < self._pushed):
            start = time.perf_counter()
            ready.append(self._smooth(self._emitted))
            self._emitted += 1
            self._forget(self._emitted - radius)
            self.seconds["smoothing"] += time.perf_counter() - start
        return ready

    def _forget(self, oldest: int) -> None:
        """Drop the logits of frames before ``oldest`` and the flows of pairs starting there."""
        for store in (self._logits, self._active, self._forward, self._backward):
            for index in [k for k in store if k < oldest]:
                del store[index]

    def _smooth(self, t: int) -> SmoothedFrame:
        config = self.config
        if config.radius == 0:
            return SmoothedFrame(t, self._logits[t], self._active[t])
        assert self._extent is not None
        votes = [(config.centre_weight, self._logits[t], self._active[t])]
        for j in range(-config.radius, config.radius + 1):
            if j == 0 or not 0 <= t + j < self._pushed:
                continue
            if j > 0:
                steps = [self._forward[k] for k in range(t, t + j)]
                reverse = [self._backward[k] for k in range(t, t + j)]
            else:
                steps = [self._backward[k] for k in range(t - 1, t + j - 1, -1)]
                reverse = [self._forward[k] for k in range(t - 1, t + j - 1, -1)]
            displacement, reachable = chain_flows(
                steps,
                extent=self._extent,
                reverse=reverse if config.occlusion_check else None,
                alpha=config.consistency_alpha,
                beta=config.consistency_beta,
            )
            warped, valid = warp_logits(
                self._logits[t + j],
                self._active[t + j],
                displacement,
                extent=self._extent,
                reachable=reachable,
            )
            votes.append((config.neighbour_weight, warped, valid))
        logits, active = weighted_vote(votes)
        return SmoothedFrame(t, logits, active)
