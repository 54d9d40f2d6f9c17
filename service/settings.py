"""Service settings from the environment (``DDP_`` prefix), e.g. ``DDP_MAX_BATCH_SIZE=8``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.config import get_config
from model.device import Precision
from model.paths import DEFAULT_WEIGHTS
from model.runtimes.names import RuntimeSetting

BatchMode = Literal["group", "pad"]
"""How a collected batch is split into forward passes: ``group`` one pass per image shape,
``pad`` one pass for all images, padded to a common size."""


def _config_name(name: str) -> str:
    """``name`` if ``model.config.CONFIGS`` has it (else ``get_config``'s ValueError)."""
    get_config(name)
    return name


class Settings(BaseSettings):
    """Everything the service reads at start-up; one instance per app."""

    model_config = SettingsConfigDict(env_prefix="DDP_", frozen=True)

    weights: Path = DEFAULT_WEIGHTS
    """Checkpoint (.safetensors) served. Missing weights are a start-up error unless
    ``untrained_config`` is set."""
    untrained_config: Annotated[str, AfterValidator(_config_name)] | None = None
    """Serve a randomly initialised network of this config when ``weights`` is missing
    (plumbing and demos only: its output is meaningless)."""
    device: str = "auto"
    """``auto`` (CUDA when present, else the CPU), ``cpu`` or ``cuda[:N]``."""
    precision: Precision = "fp32"
    runtime: RuntimeSetting = "auto"
    """What runs the network: ``auto`` (the fastest runtime recorded for these weights on
    this CPU within 0.5 GPS AP of eager fp32, else ``torch``: docs/runtimes.md), ``torch``
    (eager fp32), ``torch-channels-last``, ``torch-compile``, ``torch-bf16``, ``onnxruntime``
    or ``openvino`` (its export, written to the export cache ``$DDP_CACHE_DIR/exports`` on
    the first start and read back after: docs/export.md). ``/v1/model`` says which runs and
    why."""
    auto_export: bool = False
    """Whether ``auto`` may export the network at start-up (minutes) to run an exported
    runtime; False: such a runtime is chosen only if its export is already cached."""
    auto_compile: bool = False
    """Whether ``auto`` may choose ``torch-compile``, which compiles for minutes at start-up
    and again on the first image of each new padded size (requests wait meanwhile)."""
    torch_threads: int | None = Field(default=None, ge=1)
    """Intra-op threads of torch on the CPU (None: torch's default)."""

    max_batch_size: int | None = Field(default=None, ge=1, le=64)
    """Images per forward pass; None: the device's default
    (``service.batching.DEFAULT_MAX_BATCH_SIZE``)."""
    max_wait_ms: float = Field(default=10.0, ge=0.0, le=10_000.0)
    """How long the batcher waits for more requests after the first one of a batch."""
    batch_mode: BatchMode = "group"
    """``group``: one forward pass per image shape, so a result equals the image's result
    alone (up to float rounding). ``pad``: one pass for the whole batch, padded to the largest
    image: fewer passes but more pixels, and results differ slightly from alone (other
    padding). On a 2-core CPU, on three mixed sizes, ``pad`` measured 0.90-0.93x the
    throughput of ``group`` with a worse p99 (docs/benchmarks/service_batching.md); the
    mode matters only when ``max_batch_size`` > 1 and sizes differ."""
    queue_size: int | None = Field(default=None, ge=1)
    """Requests waiting for the model beyond this are refused at once (503 + Retry-After).
    None: the device's default (``service.batching.DEFAULT_QUEUE_SIZE``)."""
    max_batch_pixels: int | None = Field(default=None, ge=1)
    """Image pixels of one forward pass at most (images beyond wait for the next pass): the
    results a pass holds grow with pixels x persons. None: ``max_image_side`` squared, one
    image of the largest size."""
    max_queued_pixels: int | None = Field(default=None, ge=1)
    """Image pixels waiting for the model at most, beside ``queue_size``: an image that would
    bring the queue over is refused at once (503 + Retry-After) unless no image is queued, and
    while the queue holds this many no upload is read. None:
    ``service.batching.QUEUED_LARGEST_IMAGES`` images of ``max_image_side`` squared."""
    refusals_per_s: float = Field(default=100.0, ge=0.0)
    """503s (queue full) answered at once per second at most, a second's worth at a time; one
    beyond waits for its turn and is let through if the queue has room by then, so clients
    that ignore Retry-After cost the CPU of this many refusals a second however fast they
    resend (service/admission.py). 0: no limit."""
    request_timeout_s: float = Field(default=30.0, gt=0.0)
    """Deadline of a request from its arrival in the queue; past it: 504, and its work stops
    where it is (in the queue, between two persons of post-processing or of encoding)."""
    drain_timeout_s: float = Field(default=30.0, ge=0.0)
    """At shutdown, how long queued requests may still take to finish."""
    worker_threads: int = Field(default=2, ge=1)
    """Threads decoding uploads and encoding responses (the model has its own thread)."""

    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    """Checked from the image header, before the pixels are decoded."""
    max_image_side: int = Field(default=2048, ge=64)
    """An image longer than this (either side) is downscaled to it as it is decoded, and
    answered in the pixels of the downscaled image (the answer gives both sizes): what bounds
    the work and memory of one request (docs/service.md, "Cost of one image"). The network
    itself sees the image resized to its input size (512 on the longer side by default)."""
    warmup: bool = True
    """Run one forward pass at start-up; ``/readyz`` says ready only after it."""

    # -- connections (service.connections: what uvicorn itself does not limit) -----------------
    header_timeout_s: float = Field(default=10.0, gt=0.0)
    """Deadline for a request's headers, from the connection's start (or the first byte of a
    next request on it); past it: 408 and the connection closed (slowloris)."""
    body_timeout_s: float = Field(default=30.0, gt=0.0)
    """Longest wait for the next piece of a request body while it streams; past it the
    connection is closed."""
    max_connections: int = Field(default=512, ge=1)
    """Open connections at most; one more is closed at once."""
    keep_alive_timeout_s: float = Field(default=5.0, gt=0.0)
    """How long an idle connection stays open after a response (uvicorn's keep-alive)."""

    # -- video jobs (POST /densepose/video) ----------------------------------------------------
    video_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    """Largest clip upload, counted while it streams to disk."""
    video_max_seconds: float = Field(default=60.0, gt=0.0)
    video_max_frames: int = Field(default=1800, ge=1)
    video_max_pixels: int = Field(default=1920 * 1080, ge=1)
    """Width × height of one frame."""
    video_max_running: int = Field(default=1, ge=1)
    """Jobs one worker processes at once (each in its own thread; in ``ddp serve``'s own
    worker, model calls share the model thread)."""
    video_max_queued: int = Field(default=8, ge=0)
    """Jobs waiting for a worker; beyond running + queued (all workers together) a new upload
    gets 429. With several workers, count their running jobs in here."""
    video_job_ttl_s: float = Field(default=3600.0, gt=0.0)
    """A finished job (done, failed, cancelled) and its files are removed this long after it
    finished."""
    video_jobs_root: Path | None = None
    """The jobs' files (``jobs/<id>/``: upload and results) and, without
    ``video_queue_url``, the queue's SQLite database; every API replica and worker must read
    the same one (a shared volume). None: ``video-jobs`` in the project cache
    (``$DDP_CACHE_DIR``, else ``.cache/``). Kept across restarts."""
    video_queue_url: str | None = None
    """None: the embedded queue (SQLite in ``video_jobs_root``: one machine, no server).
    ``redis://host:6379/0``: Redis, for many API replicas and ``ddp worker`` processes."""
    video_worker: bool = True
    """Run video jobs in this process too (``ddp serve`` alone does everything); False: only
    ``ddp worker`` processes run them."""
    video_job_lease_s: float = Field(default=30.0, gt=0.0)
    """A running job's lease, renewed by its worker every third of it; a job whose lease ran
    out (its worker was killed) is queued again and run from the start."""
    video_raft_weights: Path | None = None
    """torchvision RAFT weights; without them ``flow=raft`` is refused (422)."""


@lru_cache
def get_settings() -> Settings:
    """The process's settings (cached); tests build ``Settings(...)`` and pass them instead."""
    return Settings()
