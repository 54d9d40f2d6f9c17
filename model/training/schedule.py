"""The paper's optimisation recipe: SGD with momentum, linear warm-up, two step decays."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
DECAY_AT = (0.77, 0.92)
"""Fractions of the schedule where the learning rate drops (the paper's 70k and 84k of 90k)."""
DECAY_FACTOR = 0.1


def learning_rate(
    step: int,
    *,
    base_lr: float,
    total_steps: int,
    warmup_steps: int,
    warmup_start: float = 0.001,
) -> float:
    """LR of optimiser step ``step`` (0-based).

    During warm-up the factor rises linearly from ``warmup_start`` at step 0 to 1 at
    ``warmup_steps``; it is multiplied by ``DECAY_FACTOR`` from each ``round(f · total_steps)``
    of ``DECAY_AT`` on.
    """
    factor = 1.0
    if step < warmup_steps:
        factor = warmup_start + (1.0 - warmup_start) * step / warmup_steps
    for fraction in DECAY_AT:
        if step >= round(fraction * total_steps):
            factor *= DECAY_FACTOR
    return base_lr * factor


def build_optimizer(parameters: Iterable[nn.Parameter], *, lr: float) -> torch.optim.SGD:
    """SGD, momentum 0.9, weight decay 1e-4 on every trainable parameter."""
    trainable = [p for p in parameters if p.requires_grad]
    return torch.optim.SGD(trainable, lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
