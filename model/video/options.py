"""How a video is processed: ``VideoOptions``, checked when made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.temporal import FlowName, SmoothingConfig


@dataclass(frozen=True)
class VideoOptions:
    """How a video is processed.

    ``smooth`` = False is the "w/o temporal smoothing" setting (no flow is computed); ``radius``,
    ``centre_weight`` and ``neighbour_weight`` are eq. 6's window and weights (the paper: 2 and
    0.2 everywhere); ``flow``: ``dis`` (OpenCV, CPU) or ``raft`` (needs ``raft_weights``);
    ``occlusion_check`` also drops votes failing a forward-backward flow check;
    ``smooth_masks`` smooths the persons' masks with the IUV logits.
    """

    smooth: bool = True
    flow: FlowName = "dis"
    radius: int = 2
    neighbour_weight: float = 0.2
    batch_size: int = 4
    raft_weights: Path | None = None
    score_threshold: float | None = None
    """Drop persons below this; None: the network's ``detection_score_threshold``."""
    centre_weight: float = 0.2
    occlusion_check: bool = False
    smooth_masks: bool = True
    """With ``smooth``: the persons' mask logits follow the smoothed foreground too
    (``model.video.pipeline``: eq. 6 on each frame's strongest mask logit per cell); False:
    only the IUV logits are smoothed (the paper)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.score_threshold is not None and not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if self.flow not in ("dis", "raft"):
            raise ValueError(f"flow must be 'dis' or 'raft', got {self.flow!r}")
        if self.smooth and self.flow == "raft" and self.raft_weights is None:
            raise ValueError("flow 'raft' needs raft_weights (no RAFT weights ship)")
        self.smoothing()  # validates radius and weights

    def smoothing(self) -> SmoothingConfig:
        """Eq. 6's settings; radius 0 (frames unchanged) when ``smooth`` is False."""
        return SmoothingConfig(
            radius=self.radius if self.smooth else 0,
            centre_weight=self.centre_weight,
            neighbour_weight=self.neighbour_weight,
            occlusion_check=self.occlusion_check,
        )
