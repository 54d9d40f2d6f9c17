"""The ``torch`` runtime: ``DDP.forward`` in eager PyTorch (the reference the exports are
compared with)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from model.network.ddp import DDP
from model.structures import DDPOutput


@dataclass
class TorchRuntime:
    model: DDP
    name = "torch"

    @property
    def description(self) -> str:
        return f"torch {torch.__version__} (eager)"

    def __call__(self, images: Tensor, image_sizes: Tensor) -> DDPOutput:
        return self.model(images, image_sizes)
