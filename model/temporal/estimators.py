"""Choosing a flow estimator by name: OpenCV DIS or torchvision RAFT."""

from __future__ import annotations

from pathlib import Path

import torch

from model.temporal.flow import DISFlow, FlowEstimator, FlowName
from model.temporal.raft import RAFTFlow


def build_flow_estimator(
    name: FlowName, *, raft_weights: Path | None = None, device: torch.device | str = "cpu"
) -> FlowEstimator:
    """``dis`` (CPU), or ``raft`` on ``device`` with its weights read from ``raft_weights``."""
    if name == "dis":
        return DISFlow()
    if name == "raft":
        if raft_weights is None:
            raise ValueError(
                "RAFT needs a weights file (raft_weights / --raft-weights): torchvision's "
                "raft_small or raft_large state dict as .pth or .safetensors; none ships here"
            )
        return RAFTFlow(raft_weights, device=device)
    raise ValueError(f"unknown flow estimator {name!r}; choose 'dis' or 'raft'")
