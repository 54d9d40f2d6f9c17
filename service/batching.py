"""Dynamic batching: one bounded asyncio queue, one batcher task, one model thread.

``submit`` puts a request in the queue (or refuses it at once when the queue is full) and
waits for its future until the request's deadline. The queue is bounded twice: by its count
of requests, and (with ``cost``) by the cost of the requests in it together, the service's
image pixels, which the work and memory of the queued requests grow with. Admission can be
decided earlier, before the request's item is even made: ``refuse_if_full`` refuses at once
what ``submit`` would refuse for any item (before an upload is read), and ``reserve`` holds a
place in the queue that ``submit`` then takes (while an upload is decoded), so the requests
being prepared never outnumber the free places and a refusal costs no work.

The batcher takes the first waiting request, then more until it has ``max_batch_size`` or
``max_wait_s`` has passed, drops the requests nobody waits for any more (cancelled: deadline
passed or client gone), splits the rest into groups by ``group_key`` (requests of one group
are computed together, in one ``run_batch`` call; without a key the whole batch is one
group), runs each group in the model thread and resolves every future. A group that fails is
retried one request at a time, so a bad request fails alone; the batcher task itself never
dies.

Every request has a ``Deadline`` (``model.inference.deadline``; ``submit``'s ``timeout_s`` or
one the caller made). A model with a ``run_batch(items, deadlines)`` method
(``DeadlineAwareModel``: the ``Predictor``) gets each item's deadline and stops the work on an
item whose deadline passed (within one person's work), answering a ``DeadlineExceeded`` for
it alone: that request gets the ``deadline`` rejection (504), the others of its batch their
results. Any output that is an exception fails its own request only.

``BatchingPolicy`` is how the service batches images: worked out once, when the model is
loaded, from the settings and the model's device.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from model.inference.deadline import Deadline, DeadlineExceeded
from service.metrics import ServiceMetrics
from service.settings import BatchMode, Settings

if TYPE_CHECKING:
    import numpy as np
    import torch

logger = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")
In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)
R = TypeVar("R")
RejectReason = Literal["queue_full", "deadline", "shutting_down"]


class Rejected(Exception):
    """A request the batcher did not compute, and why."""

    def __init__(self, reason: RejectReason, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after_s = retry_after_s


def reject(
    metrics: ServiceMetrics, reason: RejectReason, message: str, *, retry_after_s: int = 1
) -> Rejected:
    """A ``Rejected`` to raise, counted in ``ddp_rejected_requests_total{reason}`` (each
    rejection is made, and counted, once)."""
    metrics.rejections.labels(reason=reason).inc()
    return Rejected(reason, message, retry_after_s=retry_after_s)


@runtime_checkable
class DeadlineAwareModel(Protocol[In_contra, Out_co]):
    """A model that takes each item's deadline and stops the work on an item past it."""

    def run_batch(
        self, items: Sequence[In_contra], deadlines: Sequence[Deadline]
    ) -> Sequence[Out_co | BaseException]:
        """One output per item, in order: its result, or the exception that failed it alone
        (``DeadlineExceeded`` once its deadline passed)."""
        ...


@dataclass(frozen=True)
class Batched(Generic[Out]):
    """One request's output and what it cost."""

    value: Out
    queue_s: float
    """From ``submit`` to the start of its batch."""
    model_s: float
    """Duration of the batch it was computed in."""
    batch_size: int


@dataclass
class QueuePlace:
    """A place held in a batcher's queue (``Batcher.reserve``) for a request being prepared;
    ``submit(item, place=...)`` takes it, ``release`` (or the end of a ``with`` block) gives it
    back if it was not taken."""

    _give_back: Callable[[], None]
    held: bool = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._give_back()

    def __enter__(self) -> QueuePlace:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


@dataclass
class _Job(Generic[In, Out]):
    item: In
    future: asyncio.Future[Batched[Out]]
    enqueued_at: float
    deadline: Deadline
    cost: int = 0
    started_at: float = field(default=0.0)


class Batcher(Generic[In, Out]):
    """Batches ``submit``-ted items into calls of the model (same order): ``run_batch(items,
    deadlines)`` of a ``DeadlineAwareModel``, else ``run_batch(items)`` (every item computed to
    the end). An output may be an exception: it fails its item alone.

    ``group_key``: items with equal keys share a call; None: each collected batch is one call.
    ``cost`` and ``max_batch_cost``: a call's items cost at most ``max_batch_cost`` together
    (a group over it runs as several calls, one after the other, each holding at least one
    item); None: no bound. ``max_queued_cost``: the queued items cost at most this together
    (an item that would bring them over it is refused, ``queue_full``, unless the queue holds
    nothing that costs: so one item of any cost always gets in); None: no bound.
    ``cost_unit`` names the cost in refusal messages.
    """

    def __init__(
        self,
        run_batch: Callable[[list[In]], Sequence[Out | BaseException]]
        | DeadlineAwareModel[In, Out],
        *,
        max_batch_size: int,
        max_wait_s: float,
        queue_size: int,
        metrics: ServiceMetrics,
        group_key: Callable[[In], Hashable] | None = None,
        cost: Callable[[In], int] | None = None,
        max_batch_cost: int | None = None,
        max_queued_cost: int | None = None,
        cost_unit: str = "units",
    ) -> None:
        if (cost is None) != (max_batch_cost is None):
            raise ValueError("cost and max_batch_cost go together")
        if cost is None and max_queued_cost is not None:
            raise ValueError("max_queued_cost needs a cost")
        self._cost = cost
        self._max_batch_cost = max_batch_cost
        self._max_queued_cost = max_queued_cost
        self._cost_unit = cost_unit
        self._queued_cost = 0
        """The cost of the items in the queue together (not yet collected into a batch)."""
        self._run_batch: Callable[[list[In], list[Deadline]], Sequence[Out | BaseException]]
        if isinstance(run_batch, DeadlineAwareModel):
            self._run_batch = run_batch.run_batch
        else:
            plain = run_batch
            self._run_batch = lambda items, _: plain(items)
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._group_key = group_key
        self._metrics = metrics
        self._queue: asyncio.Queue[_Job[In, Out]] = asyncio.Queue(maxsize=queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ddp-model")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._reserved = 0
        """Places held by ``QueuePlace``s: always queued + reserved <= the queue's size."""
        self._recent_batch_s = 0.0
        metrics.track_queue_depth(self._queue.qsize)
        if cost is not None:
            metrics.track_queued_cost(lambda: self._queued_cost)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def queued_cost(self) -> int:
        """The cost of the queued items together (0 without ``cost``)."""
        return self._queued_cost

    def run_in_model_thread(self, fn: Callable[[], R]) -> R:
        """``fn()`` in the model thread, after the batches already waiting there, so
        work from other threads (video jobs) never runs the network beside a batch. Blocks
        the calling thread: never call it on the event loop."""
        return self._executor.submit(fn).result()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="ddp-batcher")

    def reserve(self) -> QueuePlace:
        """A place in the queue for a request still to be prepared.

        Raises:
            Rejected: at once, as ``submit`` would: the queue (with the places already held)
                is full, or the service is shutting down.
        """
        self.refuse_if_full()
        self._reserved += 1
        return QueuePlace(self._give_back)

    def _give_back(self) -> None:
        self._reserved -= 1

    async def submit(
        self,
        item: In,
        *,
        timeout_s: float | None = None,
        deadline: Deadline | None = None,
        place: QueuePlace | None = None,
    ) -> Batched[Out]:
        """Compute ``item`` in some batch (in ``place`` if one is held for it) before its
        deadline: ``deadline``, or ``timeout_s`` seconds from now (give one of the two).
        Cancelling the caller drops it if not yet started.

        Raises:
            Rejected: queue full or shutting down (at once), or the deadline passed (in the
                queue, in the model, or while the caller waited).
            Exception: whatever ``run_batch`` raised, or answered, for this item alone.
        """
        if (timeout_s is None) == (deadline is None):
            raise TypeError("submit takes either timeout_s or deadline")
        if deadline is None:
            assert timeout_s is not None
            deadline = Deadline.after(timeout_s)
        if place is not None:
            place.release()  # the item takes its place now: the queue has room for it
        self.refuse_if_full()
        cost = 0 if self._cost is None else self._cost(item)
        self._refuse_if_over_cost(cost)
        future: asyncio.Future[Batched[Out]] = asyncio.get_running_loop().create_future()
        job = _Job(item, future, enqueued_at=time.monotonic(), deadline=deadline, cost=cost)
        self._queue.put_nowait(job)
        self._queued_cost += cost
        budget_s = deadline.remaining_s()
        try:
            async with asyncio.timeout(None if math.isinf(budget_s) else budget_s):
                return await job.future
        except TimeoutError:
            already = _rejection_of(job.future)
            if already is not None:  # the batcher rejected it (and counted it) as time ran out
                raise already from None
            raise self._reject(
                "deadline", f"no result within the request timeout of {budget_s:.3g} s"
            ) from None

    async def stop(self, *, drain_timeout_s: float) -> None:
        """Refuse new requests, let the queued ones finish (up to the timeout), then stop."""
        self._closing = True
        try:
            async with asyncio.timeout(drain_timeout_s):
                await self._queue.join()
        except TimeoutError:
            logger.warning("shutdown: %d queued requests not computed in time", self.depth)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while not self._queue.empty():
            job = self._take()
            self._fail(job, Rejected("shutting_down", "the service shut down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    def full(self) -> bool:
        """Whether ``refuse_if_full`` would refuse now (nothing counted)."""
        return self._refusal() is not None

    def refuse_if_full(self) -> None:
        """Raise at once what ``submit`` would raise now for any item (queue full or shutting
        down): a check that costs nothing and holds nothing, before any work on a request.

        Raises:
            Rejected: ``queue_full`` (queued + reserved fill the queue, or the queued items
                use up ``max_queued_cost``), ``shutting_down``.
        """
        refusal = self._refusal()
        if refusal is not None:
            reason, message = refusal
            retry_after_s = 1 if reason == "shutting_down" else self._retry_after_s()
            raise self._reject(reason, message, retry_after_s=retry_after_s)

    def _refusal(self) -> tuple[RejectReason, str] | None:
        """Why any item would be refused now, else None."""
        if self._closing:
            return "shutting_down", "the service is shutting down"
        if self._queue.qsize() + self._reserved >= self._queue.maxsize:
            return "queue_full", f"{self._queue.maxsize} requests are already waiting: retry later"
        if self._max_queued_cost is not None and self._queued_cost >= self._max_queued_cost:
            return "queue_full", (
                f"the queued requests already hold {self._queued_cost:,} {self._cost_unit}, "
                f"the queue's bound: retry later"
            )
        return None

    def _refuse_if_over_cost(self, cost: int) -> None:
        """Refuse an item of ``cost`` that would bring the queue over ``max_queued_cost``
        (unless nothing that costs is queued)."""
        bound = self._max_queued_cost
        if bound is None or self._queued_cost == 0 or self._queued_cost + cost <= bound:
            return
        raise self._reject(
            "queue_full",
            f"this request holds {cost:,} {self._cost_unit} and the queued ones "
            f"{self._queued_cost:,}, over the queue's {bound:,}: retry later",
            retry_after_s=self._retry_after_s(),
        )

    def _reject(self, reason: RejectReason, message: str, *, retry_after_s: int = 1) -> Rejected:
        return reject(self._metrics, reason, message, retry_after_s=retry_after_s)

    def _retry_after_s(self) -> int:
        batches_ahead = self.depth / self._max_batch_size + 1
        return max(1, math.ceil(batches_ahead * self._recent_batch_s))

    async def _loop(self) -> None:
        while True:
            jobs = await self._collect()
            try:
                await self._process(jobs)
            except Exception:  # a bug in this module must not stop the service
                logger.exception("batcher: unexpected error; failing the batch's requests")
                for job in jobs:
                    self._fail(job, RuntimeError("internal batching error"))
            finally:
                for _ in jobs:
                    self._queue.task_done()

    def _take(self) -> _Job[In, Out]:
        """The next job out of the queue (there is one), its cost no longer queued."""
        job = self._queue.get_nowait()
        self._queued_cost -= job.cost
        return job

    async def _collect(self) -> list[_Job[In, Out]]:
        """The first waiting job, then more until the batch is full or the window closes."""
        jobs = [await self._get()]
        window_end = time.monotonic() + self._max_wait_s
        while len(jobs) < self._max_batch_size:
            if self._queue.empty():
                remaining = window_end - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        jobs.append(await self._get())
                except TimeoutError:
                    break
            else:
                jobs.append(self._take())
        return jobs

    async def _get(self) -> _Job[In, Out]:
        """The next job, once there is one."""
        job = await self._queue.get()
        self._queued_cost -= job.cost
        return job

    async def _process(self, jobs: list[_Job[In, Out]]) -> None:
        now = time.monotonic()
        live = []
        for job in jobs:
            if job.future.done():  # cancelled: deadline passed or the client went away
                continue
            if job.deadline.expired:
                self._fail(job, self._reject("deadline", "the request timed out in the queue"))
                continue
            job.started_at = now
            self._metrics.queue_wait.observe(now - job.enqueued_at)
            live.append(job)
        for group in self._groups(live):
            for call in self._within_cost(group):
                await self._run_group(call, retry_alone=len(call) > 1)

    def _groups(self, jobs: list[_Job[In, Out]]) -> list[list[_Job[In, Out]]]:
        if self._group_key is None:
            return [jobs] if jobs else []
        groups: dict[Hashable, list[_Job[In, Out]]] = {}
        for job in jobs:
            groups.setdefault(self._group_key(job.item), []).append(job)
        return list(groups.values())

    def _within_cost(self, jobs: list[_Job[In, Out]]) -> list[list[_Job[In, Out]]]:
        """``jobs`` in order, cut into calls whose items cost at most ``max_batch_cost``
        together (an item over it alone)."""
        if self._cost is None or self._max_batch_cost is None:
            return [jobs]
        calls: list[list[_Job[In, Out]]] = []
        total = 0
        for job in jobs:
            cost = self._cost(job.item)
            if not calls or total + cost > self._max_batch_cost:
                calls.append([])
                total = 0
            calls[-1].append(job)
            total += cost
        return calls

    async def _run_group(self, jobs: list[_Job[In, Out]], *, retry_alone: bool) -> None:
        jobs = [job for job in jobs if not job.future.done()]
        if not jobs:
            return
        loop = asyncio.get_running_loop()
        items = [job.item for job in jobs]
        deadlines = [job.deadline for job in jobs]
        try:
            timed: tuple[Sequence[Out | BaseException], float] = await loop.run_in_executor(
                self._executor, _timed, self._run_batch, items, deadlines
            )
        except Exception as error:
            if retry_alone:
                logger.warning("batch of %d failed (%r); retrying one by one", len(jobs), error)
                for job in jobs:
                    await self._run_group([job], retry_alone=False)
                return
            for job in jobs:
                self._fail(job, error)
            return
        outputs, seconds = timed
        self._recent_batch_s = seconds
        self._metrics.forward_time.labels(batch_size=str(len(jobs))).observe(seconds)
        self._metrics.batch_size.observe(len(jobs))
        for job, output in zip(jobs, outputs, strict=True):
            if job.future.done():  # cancelled meanwhile: the caller counted its own end
                continue
            if isinstance(output, DeadlineExceeded):
                message = f"no result within the request timeout: {output}"
                self._fail(job, self._reject("deadline", message))
            elif isinstance(output, BaseException):
                self._fail(job, output)
            else:
                job.future.set_result(
                    Batched(output, job.started_at - job.enqueued_at, seconds, len(jobs))
                )

    @staticmethod
    def _fail(job: _Job[In, Out], error: BaseException) -> None:
        if not job.future.done():
            job.future.set_exception(error)


def _timed(
    run_batch: Callable[[list[In], list[Deadline]], Sequence[Out | BaseException]],
    items: list[In],
    deadlines: list[Deadline],
) -> tuple[Sequence[Out | BaseException], float]:
    """Run in the model thread; the output count must match the input count."""
    start = time.perf_counter()
    outputs = run_batch(items, deadlines)
    if len(outputs) != len(items):
        raise RuntimeError(f"run_batch returned {len(outputs)} outputs for {len(items)} inputs")
    return outputs, time.perf_counter() - start


DEFAULT_MAX_BATCH_SIZE = {"cpu": 4, "cuda": 8}
"""By device type, when ``max_batch_size`` is not set. On the CPU 4 measured 1.12-1.17x the
throughput of batch size 1 from 2 concurrent clients on, equal at 1, on a 2-core CPU
(docs/benchmarks/service_batching.md); 8 on CUDA is not measured here."""
DEFAULT_QUEUE_SIZE = {"cpu": 16, "cuda": 64}
"""By device type, when ``queue_size`` is not set. The queue bounds the wait of every accepted
request: on a 2-core CPU serving about 3 requests/s, a queue of 64 meant 20-25 s waits under
overload (p99 of accepted requests 24.7 s) and 45 s to drain afterwards; 16 is about 5 s of
work (docs/benchmarks/overload.md)."""
QUEUED_LARGEST_IMAGES = 4
"""When ``max_queued_pixels`` is not set, the queue holds at most the pixels of this many
images of the largest size (``max_image_side`` squared): 16.8 MP by default, the 16 queued
places' worth of 1 MP photos. Decoding, post-processing and encoding grow with the pixels
(the network's own work does not: it sees every image at its input size), so 16 uploads of
2048 x 2048 would queue about four times the work and memory of 16 phone-sized photos."""


@dataclass(frozen=True)
class BatchingPolicy:
    """How requests are batched; ``/v1/model`` reports it as it is (``batching``)."""

    max_batch_size: int
    """Images per forward pass."""
    max_wait_ms: float
    """How long a batch waits for more requests after its first one."""
    batch_mode: BatchMode
    queue_size: int
    """Requests waiting beyond this are refused at once."""
    request_timeout_s: float
    """Deadline of a request from its arrival in the queue (its work stops there: in the
    queue, in post-processing, in encoding)."""
    max_batch_pixels: int
    """Image pixels of one forward pass at most: its results (masks and charts at image size,
    docs/service.md "Memory of one request") grow with pixels x persons, and a pass's are
    held until it ends. Images beyond run in the next pass, one after the other."""
    max_queued_pixels: int
    """Image pixels waiting in the queue at most: an image that would bring them over is
    refused (503 ``queue_full``), unless the queue is empty of images."""

    @classmethod
    def of(cls, settings: Settings, device: torch.device) -> BatchingPolicy:
        """The settings, with the defaults of ``device``'s type where they leave it open."""
        kind = "cuda" if device.type == "cuda" else "cpu"
        batch_size, queue_size = settings.max_batch_size, settings.queue_size
        return cls(
            max_batch_size=DEFAULT_MAX_BATCH_SIZE[kind] if batch_size is None else batch_size,
            max_wait_ms=settings.max_wait_ms,
            batch_mode=settings.batch_mode,
            queue_size=DEFAULT_QUEUE_SIZE[kind] if queue_size is None else queue_size,
            request_timeout_s=settings.request_timeout_s,
            max_batch_pixels=settings.max_image_side**2
            if settings.max_batch_pixels is None
            else settings.max_batch_pixels,
            max_queued_pixels=QUEUED_LARGEST_IMAGES * settings.max_image_side**2
            if settings.max_queued_pixels is None
            else settings.max_queued_pixels,
        )

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000

    @property
    def group_key(self) -> Callable[[np.ndarray], Hashable] | None:
        """The batcher's ``group_key``: by image shape (``group``: images of one shape are
        resized and padded alike, so a batched result equals the image's result alone), or
        none (``pad``: the whole batch is one ``Predictor`` call, which pads its images to a
        common size)."""
        return image_shape if self.batch_mode == "group" else None


def image_shape(image: np.ndarray) -> tuple[int, ...]:
    return image.shape


def image_pixels(image: np.ndarray) -> int:
    """The batcher's ``cost`` of an (H, W, 3) image: H x W."""
    return int(image.shape[0] * image.shape[1])


def _rejection_of(future: asyncio.Future[Any]) -> Rejected | None:
    """The ``Rejected`` a finished future holds, else None."""
    if not future.done() or future.cancelled():
        return None
    error = future.exception()
    return error if isinstance(error, Rejected) else None
