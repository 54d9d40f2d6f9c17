"""The served model: loading (weights or, for demos, a random network), warm-up, identity, how
requests are batched, and the per-request selection of persons from a batch's results."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from model.checkpoint import file_sha256
from model.config import get_config
from model.predictor import Predictor
from model.sparse import resolve_backend
from model.structures import DensePoseResult
from service.settings import BatchMode, Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What ``/v1/model`` and the ``ddp_model`` metric report."""

    model_id: str
    """``<config name>@<first 12 hex digits of the weights' sha256>`` or ``<name>@untrained``."""
    config: dict[str, Any]
    weights_path: str | None
    weights_sha256: str | None
    device: str
    precision: str
    sparse_backend: str
    torch_version: str
    torch_threads: int


def check_weights(settings: Settings) -> None:
    """Missing weights are an error unless an untrained config is named.

    Raises:
        FileNotFoundError: with what to set instead.
    """
    if not settings.weights.is_file() and settings.untrained_config is None:
        raise FileNotFoundError(
            f"no weights at {settings.weights}: set DDP_WEIGHTS to a checkpoint (.safetensors), "
            "or DDP_UNTRAINED_CONFIG=default to serve a random network (plumbing checks only)"
        )


def load_predictor(settings: Settings) -> tuple[Predictor, ModelInfo]:
    """The model the settings ask for: the weights, or (loudly) an untrained network."""
    check_weights(settings)
    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
    weights = settings.weights
    if weights.is_file():
        predictor = Predictor.from_checkpoint(
            weights, device=settings.device, precision=settings.precision
        )
        digest = file_sha256(weights)
        sha256: str | None = digest
        model_id = f"{predictor.config.name}@{digest[:12]}"
    else:
        assert settings.untrained_config is not None  # check_weights
        logger.warning(
            "NO WEIGHTS at %s: serving a RANDOMLY INITIALISED %r network "
            "(DDP_UNTRAINED_CONFIG): its output is meaningless, plumbing/demo only",
            weights,
            settings.untrained_config,
        )
        predictor = Predictor.untrained(
            get_config(settings.untrained_config), device=settings.device
        )
        sha256 = None
        model_id = f"{predictor.config.name}@untrained"
    info = ModelInfo(
        model_id=model_id,
        config=predictor.config.to_dict(),
        weights_path=str(weights) if sha256 else None,
        weights_sha256=sha256,
        device=str(predictor.device),
        precision=predictor.precision,
        sparse_backend=resolve_backend(predictor.config.iuv.sparse_backend, predictor.device),
        torch_version=torch.__version__,
        torch_threads=torch.get_num_threads(),
    )
    return predictor, info


def batch_size_for(settings: Settings, device: torch.device) -> int:
    """``max_batch_size`` as set, else 4 on the CPU and 8 on CUDA."""
    if settings.max_batch_size is not None:
        return settings.max_batch_size
    return 8 if device.type == "cuda" else 4


def queue_size_for(settings: Settings, device: torch.device) -> int:
    """``queue_size`` as set, else 16 on the CPU and 64 on CUDA."""
    if settings.queue_size is not None:
        return settings.queue_size
    return 64 if device.type == "cuda" else 16


def image_shape(image: np.ndarray) -> tuple[int, ...]:
    """Batch grouping key: images of one shape are resized and padded identically, so a
    batched result equals the result of the image alone."""
    return image.shape


def group_key_for(mode: BatchMode) -> Callable[[np.ndarray], Hashable] | None:
    """The batcher's ``group_key``: by image shape (``group``), or none (``pad``: the whole
    batch is one ``Predictor`` call, which pads its images to a common size)."""
    return image_shape if mode == "group" else None


def warm_up(predictor: Predictor) -> None:
    """One forward pass on a blank image of the configured input size."""
    size = predictor.config.input
    predictor([np.zeros((size.short_side, size.max_side, 3), dtype=np.uint8)])


def select_persons(
    result: DensePoseResult, *, score_threshold: float | None, max_persons: int
) -> DensePoseResult:
    """The persons scoring at least ``score_threshold``, best first, at most ``max_persons``."""
    order = torch.argsort(result.scores, descending=True, stable=True)
    if score_threshold is not None:
        order = order[result.scores[order] >= score_threshold]
    return result.select(order[:max_persons].tolist())
