"""The service's lifecycle: the model is loaded and warmed up in the background after start-up
(``/healthz`` answers at once, ``/readyz`` once the model is ready), requests go through the
batcher, shutdown drains the queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, ParamSpec, TypeVar

import numpy as np
from fastapi import Request

from model.inference.deadline import Deadline
from model.inference.predictor import Predictor
from model.structures import DensePoseResult
from service.batching import Batched, Batcher, BatchingPolicy, QueuePlace, image_pixels
from service.errors import ServiceError
from service.loading import ModelInfo, check_weights, load_predictor, warm_up
from service.metrics import ServiceMetrics
from service.settings import Settings

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Status = Literal["starting", "loading", "ready", "failed", "stopping"]


@dataclass(frozen=True)
class LoadedModel:
    predictor: Predictor
    info: ModelInfo
    policy: BatchingPolicy
    """Worked out once, at load, from the settings and the model's device."""
    batcher: Batcher[np.ndarray, DensePoseResult]


class ServiceState:
    """Owned by one app: settings, metrics, the CPU thread pool and (once loaded) the model."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.status: Status = "starting"
        self.failure: str | None = None
        self._model: LoadedModel | None = None
        self._cpu: ThreadPoolExecutor | None = None
        self._loading: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Fail now on missing weights (clear message); load and warm up in the background."""
        check_weights(self.settings)
        self._cpu = ThreadPoolExecutor(self.settings.worker_threads, thread_name_prefix="ddp-cpu")
        self.status = "loading"
        self._loading = asyncio.create_task(self._load(), name="ddp-load-model")

    async def _load(self) -> None:
        try:
            predictor, info = await self.run_cpu(load_predictor, self.settings)
            if self.settings.warmup:
                await self.run_cpu(warm_up, predictor)
        except Exception as error:  # reported by /healthz and /readyz; the process stays up
            logger.exception("loading the model failed")
            self.status, self.failure = "failed", f"{type(error).__name__}: {error}"
            return
        policy = BatchingPolicy.of(self.settings, predictor.device)
        batcher: Batcher[np.ndarray, DensePoseResult] = Batcher(
            predictor,
            max_batch_size=policy.max_batch_size,
            max_wait_s=policy.max_wait_s,
            queue_size=policy.queue_size,
            metrics=self.metrics,
            group_key=policy.group_key,
            cost=image_pixels,
            max_batch_cost=policy.max_batch_pixels,
            max_queued_cost=policy.max_queued_pixels,
            cost_unit="pixels",
        )
        batcher.start()
        self.metrics.model_info.info(
            {
                "model_id": info.model_id,
                "device": info.device,
                "sparse_backend": info.sparse_backend,
            }
        )
        self._model = LoadedModel(predictor, info, policy, batcher)
        self.status = "ready"
        logger.info("ready: %s on %s", info.model_id, info.device)

    async def stop(self) -> None:
        self.status = "stopping"
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            await asyncio.gather(self._loading, return_exceptions=True)
        if self._model is not None:
            await self._model.batcher.stop(drain_timeout_s=self.settings.drain_timeout_s)
        if self._cpu is not None:
            self._cpu.shutdown(wait=False, cancel_futures=True)

    @property
    def model(self) -> LoadedModel:
        """The loaded model; 503 (with Retry-After) until it is ready."""
        if self._model is None or self.status != "ready":
            reason = self.failure or self.status
            raise ServiceError(
                503, "not_ready", f"the model is not ready ({reason})", headers={"Retry-After": "1"}
            )
        return self._model

    async def run_cpu(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``function(*args, **kwargs)`` in the CPU thread pool (never on the event loop)."""
        assert self._cpu is not None, "run_cpu before start()"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._cpu, lambda: function(*args, **kwargs))

    async def predict(
        self,
        image: np.ndarray,
        request: Request,
        *,
        deadline: Deadline | None = None,
        place: QueuePlace | None = None,
    ) -> Batched[DensePoseResult]:
        """Batched inference of one image (in ``place`` if the route reserved one) before
        ``deadline`` (None: ``request_timeout_s`` from now); abandoned (not computed) if the
        client goes away, stopped where it is once the deadline passes (504)."""
        model = self.model
        if deadline is None:
            deadline = Deadline.after(model.policy.request_timeout_s)
        submit = asyncio.create_task(model.batcher.submit(image, deadline=deadline, place=place))
        gone = asyncio.create_task(_client_gone(request))
        try:
            await asyncio.wait({submit, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when this handler is cancelled: neither task outlives it
            gone.cancel()
            if not submit.done():
                submit.cancel()
                await asyncio.gather(submit, return_exceptions=True)
        if submit.cancelled():
            self.metrics.rejections.labels(reason="client_disconnected").inc()
            raise ServiceError(499, "client_closed_request", "the client disconnected")
        return submit.result()


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
