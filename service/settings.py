"""Service settings from the environment (``DDP_`` prefix), e.g. ``DDP_MAX_BATCH_SIZE=8``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.cli import DEFAULT_WEIGHTS
from model.device import Precision


class Settings(BaseSettings):
    """Everything the service reads at start-up; one instance per app."""

    model_config = SettingsConfigDict(env_prefix="DDP_", frozen=True)

    weights: Path = DEFAULT_WEIGHTS
    """Checkpoint (.safetensors) served. Missing weights are a start-up error unless
    ``untrained_config`` is set."""
    untrained_config: Literal["tiny", "default", "r50"] | None = None
    """Serve a randomly initialised network of this config when ``weights`` is missing
    (plumbing and demos only: its output is meaningless)."""
    device: str = "auto"
    """``auto`` (CUDA when present, else the CPU), ``cpu`` or ``cuda[:N]``."""
    precision: Precision = "fp32"
    torch_threads: int | None = Field(default=None, ge=1)
    """Intra-op threads of torch on the CPU (None: torch's default)."""

    max_batch_size: int | None = Field(default=None, ge=1, le=64)
    """Images per forward pass; None: 1 on the CPU (batching measured no faster on a 2-core
    CPU: docs/benchmarks/service_batching.md), 8 on CUDA."""
    max_wait_ms: float = Field(default=10.0, ge=0.0, le=10_000.0)
    """How long the batcher waits for more requests after the first one of a batch."""
    queue_size: int = Field(default=64, ge=1)
    """Requests waiting for the model beyond this are refused at once (503 + Retry-After)."""
    request_timeout_s: float = Field(default=30.0, gt=0.0)
    """Deadline of a request from its arrival in the queue; past it: 504, and not computed."""
    drain_timeout_s: float = Field(default=30.0, ge=0.0)
    """At shutdown, how long queued requests may still take to finish."""
    worker_threads: int = Field(default=2, ge=1)
    """Threads decoding uploads and encoding responses (the model has its own thread)."""

    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    """Checked from the image header, before the pixels are decoded."""
    warmup: bool = True
    """Run one forward pass at start-up; ``/readyz`` says ready only after it."""


@lru_cache
def get_settings() -> Settings:
    """The process's settings (cached); tests build ``Settings(...)`` and pass them instead."""
    return Settings()
