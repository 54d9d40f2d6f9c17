"""RAFT optical flow (torchvision's ``raft_small`` / ``raft_large``) from a local weights file.

No weights ship and none are downloaded: the file (a state dict saved with ``torch.save`` or
as safetensors) is read with ``torch.load(weights_only=True)`` or safetensors, and its keys and
shapes pick the variant. RAFT needs sides divisible by 8 and at least 128 pixels (its
correlation pyramid), so frames are edge-padded at the bottom/right and the flow cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn
from torchvision.models.optical_flow import raft_large, raft_small

from model.temporal.flow import check_pairs

MIN_SIDE = 128
"""Smallest side RAFT's four-level correlation pyramid accepts (16 cells at 1/8)."""


def load_state_dict(path: Path) -> dict[str, Tensor]:
    """A flat state dict from ``.safetensors`` or a ``torch.save`` file (no pickle code)."""
    if not path.is_file():
        raise FileNotFoundError(f"no RAFT weights at {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a flat state dict of tensors (name -> tensor)")
    return state


def raft_from_state_dict(state: dict[str, Tensor]) -> nn.Module:
    """The RAFT variant whose parameters have exactly these names and shapes, loaded."""
    for builder in (raft_small, raft_large):
        model = builder(weights=None, progress=False)
        expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
        if expected == {name: tuple(t.shape) for name, t in state.items()}:
            model.load_state_dict(state)
            return model.eval()
    raise ValueError(
        f"the weights match neither torchvision's raft_small nor raft_large ({len(state)} tensors)"
    )


def _padded_side(side: int) -> int:
    return max(MIN_SIDE, -(-side // 8) * 8)


class RAFTFlow:
    """``FlowEstimator`` running torchvision's RAFT on ``device``, ``num_flow_updates``
    refinement iterations (torchvision's default 12), ``chunk`` pairs per forward pass."""

    def __init__(
        self,
        weights: Path,
        *,
        device: torch.device | str = "cpu",
        num_flow_updates: int = 12,
        chunk: int = 8,
    ) -> None:
        if num_flow_updates < 1 or chunk < 1:
            raise ValueError(f"need num_flow_updates, chunk >= 1: {num_flow_updates}, {chunk}")
        self.device = torch.device(device)
        self.model = raft_from_state_dict(load_state_dict(Path(weights))).to(self.device)
        self.num_flow_updates = num_flow_updates
        self.chunk = chunk

    def _prepare(self, frames: Sequence[np.ndarray]) -> Tensor:
        """(H, W, 3) uint8 frames -> (N, 3, H', W') in [-1, 1], edge-padded to RAFT's sizes."""
        x = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).float()
        height, width = x.shape[-2:]
        pad = (0, _padded_side(width) - width, 0, _padded_side(height) - height)
        return F.pad(x / 127.5 - 1.0, pad, mode="replicate")

    def __call__(self, sources: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> Tensor:
        height, width = check_pairs(sources, targets)
        flows = []
        with torch.inference_mode():
            for start in range(0, len(sources), self.chunk):
                end = start + self.chunk
                predictions = self.model(
                    self._prepare(sources[start:end]),
                    self._prepare(targets[start:end]),
                    num_flow_updates=self.num_flow_updates,
                )
                flows.append(predictions[-1][..., :height, :width].float())
        return torch.cat(flows)  # [N, 2, H, W]
