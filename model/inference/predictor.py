"""One object that owns a loaded network and turns RGB images into dense pose results."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from model.checkpoint import load_checkpoint
from model.config import DDPConfig
from model.device import Precision, autocast, select_device
from model.inference.deadline import Deadline, DeadlineExceeded
from model.inference.postprocess import image_result, to_results
from model.inference.preprocess import PreparedBatch, image_to_tensor, prepare_batch
from model.network.ddp import DDP, build_ddp
from model.structures import DDPOutput, DensePoseResult


@dataclass
class Predictor:
    """Inference: preprocessing, ``DDP.forward`` under ``inference_mode`` (+ autocast on CUDA),
    post-processing. ``__call__(images: list of (H, W, 3) uint8 RGB) -> list[DensePoseResult]``
    is ``postprocess(*forward(images))``; video smoothing works on the logits in between.
    ``run_batch`` is ``__call__`` with a deadline per image (the service's batcher calls it)."""

    model: DDP
    config: DDPConfig
    device: torch.device
    precision: Precision = "fp32"
    runtime: Callable[[Tensor, Tensor], DDPOutput] | None = None
    """What runs the forward pass instead of ``model`` (``model.runtimes``: a torch variant
    such as channels-last or compiled, or an exported graph in ONNX Runtime or OpenVINO);
    None: ``model`` itself, eager PyTorch."""

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
        return self.postprocess(*self.forward(images_rgb))

    def run_batch(
        self, images_rgb: Sequence[np.ndarray], deadlines: Sequence[Deadline]
    ) -> list[DensePoseResult | DeadlineExceeded]:
        """``__call__`` that stops the work on an image once its deadline has passed: an image
        already past it is left out of the forward pass, one whose deadline passes during
        post-processing stops before its next person (or band of one). The other images of
        the batch are computed as usual.

        Args:
            images_rgb: (H_i, W_i, 3) uint8 RGB images, as for ``__call__``.
            deadlines: one per image.

        Returns:
            Per image, in order: its result, or the ``DeadlineExceeded`` that stopped it.
        """
        if len(deadlines) != len(images_rgb):
            raise ValueError(f"{len(deadlines)} deadlines for {len(images_rgb)} images")
        outcomes: dict[int, DensePoseResult | DeadlineExceeded] = {}
        live = []
        for i, deadline in enumerate(deadlines):
            try:
                deadline.check("before the forward pass")
            except DeadlineExceeded as error:
                outcomes[i] = error
            else:
                live.append(i)
        if live:
            output, batch = self.forward([images_rgb[i] for i in live])
            threshold = self.config.instance.mask_threshold
            for b, i in enumerate(live):
                try:
                    outcomes[i] = image_result(
                        output, batch, b, mask_threshold=threshold, deadline=deadlines[i]
                    )
                except DeadlineExceeded as error:
                    outcomes[i] = error
        return [outcomes[i] for i in range(len(images_rgb))]

    def forward(self, images_rgb: Sequence[np.ndarray]) -> tuple[DDPOutput, PreparedBatch]:
        """The raw step: (H_i, W_i, 3) uint8 RGB images (at least one) -> the network's raw
        output for their padded batch (on ``device``) and that batch.

        ``output.iuv_logits`` is (B, 75, H/4, W/4) at 1/4 of the padded input; image b covers
        its top-left ``batch.image_sizes[b] / 4`` cells.
        """
        if not images_rgb:
            raise ValueError("forward needs at least one image")
        batch = prepare_batch(
            [image_to_tensor(image) for image in images_rgb], self.config.input, device=self.device
        )
        with torch.inference_mode(), autocast(self.device, self.precision):
            network = self.model if self.runtime is None else self.runtime
            output = network(batch.images, batch.image_sizes)
        return output, batch

    def postprocess(self, output: DDPOutput, batch: PreparedBatch) -> list[DensePoseResult]:
        """The post-processing step: one ``DensePoseResult`` per image of ``batch``, in the
        images' own pixels (``output`` may have been changed in between, e.g. smoothed logits)."""
        return to_results(output, batch, mask_threshold=self.config.instance.mask_threshold)
