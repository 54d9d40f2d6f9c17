"""The served model: loading it (the weights or, for demos, a random network), warming it up,
and what identifies it (``ModelInfo``)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch

from model.checkpoint import file_sha256
from model.config import DDPConfig, get_config
from model.inference.predictor import Predictor
from model.network.sparse import resolve_backend
from model.runtimes.record import read_record, record_path
from model.runtimes.selection import load_runtime, select_runtime
from service.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What ``/v1/model`` (``routes.model_info.ServedModel``) and the ``ddp_model`` metric
    report."""

    model_id: str
    """``<config name>@<first 12 hex digits of the weights' sha256>`` or ``<name>@untrained``."""
    config: DDPConfig
    weights_name: str | None
    """The weights file's name (never its path on the server); None for an untrained network."""
    weights_sha256: str | None
    device: str
    precision: str
    sparse_backend: str
    torch_version: str
    torch_threads: int
    runtime: str
    """What runs the network (``model.runtimes.names.RuntimeName``), e.g. ``onnxruntime``."""
    runtime_detail: str
    """Its version and what it runs on, e.g. ``onnxruntime 1.32.0 (CPUExecutionProvider)``."""
    runtime_setting: str
    """What ``Settings.runtime`` asked for: ``auto`` or a runtime's name."""
    runtime_reason: str
    """Why this runtime runs: ``asked for by name``, or what ``auto`` measured, e.g.
    ``2.41x torch (0.262 s vs 0.631 s per image on AMD EPYC, ...), GPS AP -0.1 on ...``."""


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
    choice = select_runtime(
        settings.runtime,
        predictor,
        weights_sha256=sha256,
        record=read_record(weights) if sha256 else None,
        allow_export=settings.auto_export,
        allow_compile=settings.auto_compile,
    )
    if settings.runtime == "auto" and sha256 and not record_path(weights).is_file():
        logger.info("runtime auto: no record at %s", record_path(weights))
    runtime = load_runtime(choice.name, predictor)
    predictor = dataclasses.replace(predictor, runtime=runtime)
    logger.info(
        "runtime: %s chosen (%s): %s; %s",
        runtime.name, settings.runtime, choice.reason, runtime.description,
    )  # fmt: skip
    info = ModelInfo(
        model_id=model_id,
        config=predictor.config,
        weights_name=weights.name if sha256 else None,
        weights_sha256=sha256,
        device=str(predictor.device),
        precision=predictor.precision,
        sparse_backend=resolve_backend(predictor.config.iuv.sparse_backend, predictor.device),
        torch_version=torch.__version__,
        torch_threads=torch.get_num_threads(),
        runtime=runtime.name,
        runtime_detail=runtime.description,
        runtime_setting=settings.runtime,
        runtime_reason=choice.reason,
    )
    return predictor, info


def warm_up(predictor: Predictor) -> None:
    """One forward pass on a blank image of the configured input size."""
    size = predictor.config.input
    predictor([np.zeros((size.short_side, size.max_side, 3), dtype=np.uint8)])
