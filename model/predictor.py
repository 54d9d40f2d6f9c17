"""One object that owns a loaded network and turns RGB images into dense pose results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import load_checkpoint
from model.config import DDPConfig
from model.ddp import DDP, build_ddp
from model.device import Precision, autocast, select_device
from model.postprocess import to_results
from model.preprocess import image_to_tensor, prepare_batch
from model.structures import DensePoseResult


@dataclass
class Predictor:
    """Inference: preprocessing, ``DDP.forward`` under ``inference_mode`` (+ autocast on CUDA),
    post-processing. ``__call__(images: list of (H, W, 3) uint8 RGB) -> list[DensePoseResult]``."""

    model: DDP
    config: DDPConfig
    device: torch.device
    precision: Precision = "fp32"

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: str = "auto", precision: Precision = "fp32"
    ) -> Predictor:
        torch_device = select_device(device)
        model, config = load_checkpoint(path, device=torch_device)
        return cls(model.eval(), config, torch_device, precision)

    @classmethod
    def untrained(
        cls,
        config: DDPConfig,
        *,
        device: str = "auto",
        seed: int = 0,
        precision: Precision = "fp32",
    ) -> Predictor:
        """A randomly initialised network (plumbing checks only: its output is meaningless)."""
        torch.manual_seed(seed)
        torch_device = select_device(device)
        return cls(build_ddp(config, device=torch_device).eval(), config, torch_device, precision)

    def __call__(self, images_rgb: Sequence[np.ndarray]) -> list[DensePoseResult]:
        if not images_rgb:
            return []
        batch = prepare_batch(
            [image_to_tensor(image) for image in images_rgb], self.config.input, device=self.device
        )
        with torch.inference_mode(), autocast(self.device, self.precision):
            output = self.model(batch.images, batch.image_sizes)
        return to_results(output, batch, mask_threshold=self.config.instance.mask_threshold)
