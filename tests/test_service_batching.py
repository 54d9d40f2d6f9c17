"""The batcher with a fake model: batch windows, refusals, deadlines, cancellation, failures;
and the batching policy the service works out from its settings and device."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch

from service.batching import (
    QUEUED_LARGEST_IMAGES,
    Batcher,
    BatchingPolicy,
    DeadlineAwareModel,
    Rejected,
)
from service.metrics import ServiceMetrics
from service.settings import Settings

SAFETY_S = 30.0
"""Only a safety net for waits below: each waits for an event, not for time to pass."""


class FakeModel:
    """Doubles its inputs; records every batch; fails batches containing ``poison``. With
    ``hold``, every batch stays in the model until the test sets ``release``."""

    def __init__(
        self, *, delay_s: float = 0.0, poison: int | None = None, hold: bool = False
    ) -> None:
        self.delay_s = delay_s
        self.poison = poison
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, items: list[int]) -> Sequence[int]:
        with self.lock:
            self.batches.append(list(items))
        assert self.release.wait(SAFETY_S), "the test never released the model"
        time.sleep(self.delay_s)
        if self.poison in items:
            raise ValueError(f"cannot process {self.poison}")
        return [2 * item for item in items]

    @property
    def computed(self) -> list[int]:
        return sorted(item for batch in self.batches for item in batch)


def run(
    model: Callable[[list[int]], Sequence[int | BaseException]] | DeadlineAwareModel[int, int],
    scenario: Callable[[Batcher[int, int]], Awaitable[None]],
    **options: float,
) -> ServiceMetrics:
    """Run ``scenario`` against a started batcher; stop it afterwards; return its metrics."""
    metrics = ServiceMetrics()
    settings = {"max_batch_size": 4, "max_wait_s": 0.05, "queue_size": 16} | options

    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(
            model,
            max_batch_size=int(settings["max_batch_size"]),
            max_wait_s=settings["max_wait_s"],
            queue_size=int(settings["queue_size"]),
            metrics=metrics,
        )
        batcher.start()
        try:
            await scenario(batcher)
        finally:
            await batcher.stop(drain_timeout_s=5.0)

    asyncio.run(main())
    return metrics


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until ``condition()`` holds."""
    deadline = time.monotonic() + SAFETY_S
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


def rejected(metrics: ServiceMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("ddp_rejected_requests_total", {"reason": reason})
    return value or 0.0


def test_concurrent_requests_share_batches_and_get_their_own_results() -> None:
    model = FakeModel()

    async def scenario(batcher: Batcher[int, int]) -> None:
        results = await asyncio.gather(*(batcher.submit(i, timeout_s=5) for i in range(10)))
        assert [r.value for r in results] == [2 * i for i in range(10)]
        assert all(r.batch_size == 4 for r in results[:8])

    run(model, scenario)
    assert [len(b) for b in model.batches] == [4, 4, 2]


def test_a_lone_request_waits_at_most_the_window() -> None:
    model = FakeModel()

    async def scenario(batcher: Batcher[int, int]) -> None:
        start = time.monotonic()
        result = await batcher.submit(1, timeout_s=SAFETY_S)
        # the window closed the batch (of 1, not the full 4), well before the deadline
        assert result.value == 2 and result.batch_size == 1
        assert time.monotonic() - start >= 0.04
        assert result.queue_s >= 0.0

    run(model, scenario, max_wait_s=0.05)


def test_full_queue_is_refused_at_once_with_retry_after() -> None:
    model = FakeModel(hold=True)

    async def scenario(batcher: Batcher[int, int]) -> None:
        tasks = [asyncio.create_task(batcher.submit(0, timeout_s=SAFETY_S))]
        await until(lambda: len(model.batches) == 1)  # item 0 running, held in the model
        tasks += [asyncio.create_task(batcher.submit(i, timeout_s=SAFETY_S)) for i in (1, 2)]
        await until(lambda: batcher.depth == 2)
        with pytest.raises(Rejected) as refused:
            await batcher.submit(3, timeout_s=SAFETY_S)
        assert refused.value.reason == "queue_full" and refused.value.retry_after_s >= 1
        model.release.set()
        assert [r.value for r in await asyncio.gather(*tasks)] == [0, 2, 4]

    metrics = run(model, scenario, max_batch_size=1, max_wait_s=0.0, queue_size=2)
    assert rejected(metrics, "queue_full") == 1
    assert model.computed == [0, 1, 2]


def test_a_reserved_place_counts_as_queued_until_given_back() -> None:
    """A queue of 2 with one request queued and one place reserved is full: a third is
    refused at once, whether it reserves or submits; once the place is given back unused
    there is room again, and a request submitted in its place gets in."""
    model = FakeModel(hold=True)

    async def scenario(batcher: Batcher[int, int]) -> None:
        tasks = [asyncio.create_task(batcher.submit(0, timeout_s=SAFETY_S))]
        await until(lambda: len(model.batches) == 1)  # item 0 held in the model
        tasks.append(asyncio.create_task(batcher.submit(1, timeout_s=SAFETY_S)))
        await until(lambda: batcher.depth == 1)
        with batcher.reserve() as place:
            with pytest.raises(Rejected) as refused:
                batcher.reserve()
            assert refused.value.reason == "queue_full"
            with pytest.raises(Rejected):
                await batcher.submit(9, timeout_s=SAFETY_S)
        assert not place.held
        with batcher.reserve() as place:
            tasks.append(asyncio.create_task(batcher.submit(2, timeout_s=SAFETY_S, place=place)))
            await until(lambda: batcher.depth == 2)
        with pytest.raises(Rejected):
            batcher.reserve()
        model.release.set()
        assert [r.value for r in await asyncio.gather(*tasks)] == [0, 2, 4]

    metrics = run(model, scenario, max_batch_size=1, max_wait_s=0.0, queue_size=2)
    assert rejected(metrics, "queue_full") == 3
    assert model.computed == [0, 1, 2]


def test_request_past_its_deadline_is_not_computed() -> None:
    model = FakeModel(hold=True)

    async def scenario(batcher: Batcher[int, int]) -> None:
        first = asyncio.create_task(batcher.submit(0, timeout_s=SAFETY_S))
        await until(lambda: len(model.batches) == 1)  # item 0 held in the model
        with pytest.raises(Rejected) as caught:
            await batcher.submit(1, timeout_s=0.1)
        assert caught.value.reason == "deadline"
        model.release.set()
        assert (await first).value == 0

    metrics = run(model, scenario, max_batch_size=1, max_wait_s=0.0)
    assert model.computed == [0]
    assert rejected(metrics, "deadline") == 1


def test_a_request_late_in_the_queue_is_counted_as_rejected_once() -> None:
    """The batcher rejecting an expired job and the caller's own timer firing in the same loop
    turn are one rejection, not two."""
    model = FakeModel()

    async def scenario(batcher: Batcher[int, int]) -> None:
        for item in range(3):
            with pytest.raises(Rejected) as caught:
                await batcher.submit(item, timeout_s=1e-6)
            assert caught.value.reason == "deadline"

    metrics = run(model, scenario, max_batch_size=1, max_wait_s=0.0)
    assert model.computed == []
    assert rejected(metrics, "deadline") == 3


def test_cancelled_request_is_dropped_before_its_batch() -> None:
    model = FakeModel(hold=True)

    async def scenario(batcher: Batcher[int, int]) -> None:
        first = asyncio.create_task(batcher.submit(0, timeout_s=SAFETY_S))
        await until(lambda: len(model.batches) == 1)  # item 0 held in the model
        gone = asyncio.create_task(batcher.submit(1, timeout_s=SAFETY_S))
        kept = asyncio.create_task(batcher.submit(2, timeout_s=SAFETY_S))
        await until(lambda: batcher.depth == 2)
        gone.cancel()
        model.release.set()
        assert [(await first).value, (await kept).value] == [0, 4]

    run(model, scenario, max_batch_size=1, max_wait_s=0.0)
    assert model.computed == [0, 2]


def test_failing_batch_is_retried_alone_and_fails_only_the_bad_request() -> None:
    model = FakeModel(poison=3)

    async def scenario(batcher: Batcher[int, int]) -> None:
        outcomes = await asyncio.gather(
            *(batcher.submit(i, timeout_s=5) for i in range(4)), return_exceptions=True
        )
        assert [getattr(o, "value", o) for o in outcomes[:3]] == [0, 2, 4]
        assert isinstance(outcomes[3], ValueError)
        # the batcher still serves
        assert (await batcher.submit(5, timeout_s=5)).value == 10

    run(model, scenario)
    assert model.batches[0] == [0, 1, 2, 3]
    assert model.batches[1:5] == [[0], [1], [2], [3]]


def test_wrong_output_count_fails_the_batch_not_the_batcher() -> None:
    def broken(items: list[int]) -> Sequence[int]:
        return items[:-1]

    async def scenario(batcher: Batcher[int, int]) -> None:
        outcomes = await asyncio.gather(
            *(batcher.submit(i, timeout_s=5) for i in range(2)), return_exceptions=True
        )
        assert all(isinstance(o, RuntimeError) for o in outcomes)
        with pytest.raises(RuntimeError, match="outputs for 1 inputs"):
            await batcher.submit(9, timeout_s=5)

    metrics = ServiceMetrics()

    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(
            broken, max_batch_size=2, max_wait_s=0.05, queue_size=4, metrics=metrics
        )
        batcher.start()
        await scenario(batcher)
        await batcher.stop(drain_timeout_s=1)

    asyncio.run(main())


def roomy_batcher(model: FakeModel, **options: Any) -> Batcher[int, int]:
    """Batches of up to 8 in a queue of 16, with ``options`` (grouping, cost)."""
    return Batcher(
        model, max_batch_size=8, max_wait_s=0.05, queue_size=16, metrics=ServiceMetrics(),
        **options,
    )  # fmt: skip


def test_groups_run_separately() -> None:
    model = FakeModel()

    async def main() -> None:
        batcher = roomy_batcher(model, group_key=lambda item: item % 2)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(i, timeout_s=5) for i in range(6)))
        assert [r.value for r in results] == [0, 2, 4, 6, 8, 10]
        await batcher.stop(drain_timeout_s=1)

    asyncio.run(main())
    assert model.batches == [[0, 2, 4], [1, 3, 5]]


def test_a_batch_over_its_cost_runs_as_several_calls_in_order() -> None:
    model = FakeModel(hold=True)  # the first batch waits, so the rest queue up behind it

    async def main() -> None:
        batcher = roomy_batcher(model, cost=lambda item: item, max_batch_cost=10)
        batcher.start()
        first = asyncio.create_task(batcher.submit(1, timeout_s=SAFETY_S))
        await until(lambda: len(model.batches) == 1)
        items = (6, 3, 12, 2, 5)
        rest = [asyncio.create_task(batcher.submit(i, timeout_s=SAFETY_S)) for i in items]
        await until(lambda: batcher.depth == 5)
        model.release.set()
        results = await asyncio.gather(first, *rest)
        assert [r.value for r in results] == [2, 12, 6, 24, 4, 10]
        assert [r.batch_size for r in results[1:]] == [2, 2, 1, 2, 2]
        await batcher.stop(drain_timeout_s=1)

    asyncio.run(main())
    # In order, each call's items costing at most 10 together; 12 alone is over and runs alone.
    assert model.batches == [[1], [6, 3], [12], [2, 5]]
    with pytest.raises(ValueError, match="together"):
        Batcher(model, max_batch_size=1, max_wait_s=0, queue_size=1, metrics=ServiceMetrics(),
                cost=len)  # fmt: skip


def test_the_queue_holds_at_most_its_cost_and_one_item_of_any_cost_gets_in() -> None:
    """Queued items cost 10 at most together: 6 and 3 fit, 2 more would not (refused at once,
    naming the costs), 1 does; a queue at its bound refuses every item, even before its cost
    is known (``full``); once the queue is drained, one item over the whole bound gets in."""
    model = FakeModel(hold=True)
    metrics = ServiceMetrics()

    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(
            model, max_batch_size=1, max_wait_s=0.0, queue_size=16, metrics=metrics,
            cost=lambda item: item, max_batch_cost=100, max_queued_cost=10, cost_unit="pixels",
        )  # fmt: skip
        batcher.start()
        tasks = [asyncio.create_task(batcher.submit(50, timeout_s=SAFETY_S))]
        await until(lambda: len(model.batches) == 1)  # 50 left the queue: it costs no more
        assert batcher.queued_cost == 0
        tasks += [asyncio.create_task(batcher.submit(i, timeout_s=SAFETY_S)) for i in (6, 3)]
        await until(lambda: batcher.depth == 2)
        assert batcher.queued_cost == 9 and not batcher.full()
        with pytest.raises(Rejected) as refused:
            await batcher.submit(2, timeout_s=SAFETY_S)
        assert refused.value.reason == "queue_full" and refused.value.retry_after_s >= 1
        assert "holds 2 pixels and the queued ones 9, over the queue's 10" in refused.value.message
        tasks.append(asyncio.create_task(batcher.submit(1, timeout_s=SAFETY_S)))
        await until(lambda: batcher.depth == 3)
        assert batcher.queued_cost == 10 and batcher.full()
        with pytest.raises(Rejected, match="10 pixels, the queue's bound"):
            batcher.reserve()
        assert metrics.registry.get_sample_value("ddp_queue_pixels") == 10
        model.release.set()
        assert [r.value for r in await asyncio.gather(*tasks)] == [100, 12, 6, 2]
        assert batcher.queued_cost == 0
        assert (await batcher.submit(25, timeout_s=SAFETY_S)).value == 50  # alone: let in
        await batcher.stop(drain_timeout_s=1)

    asyncio.run(main())
    assert rejected(metrics, "queue_full") == 2
    assert model.computed == [1, 3, 6, 25, 50]
    with pytest.raises(ValueError, match="needs a cost"):
        Batcher(model, max_batch_size=1, max_wait_s=0, queue_size=1, metrics=ServiceMetrics(),
                max_queued_cost=1)  # fmt: skip


def test_stop_drains_the_queue_and_refuses_new_work() -> None:
    model = FakeModel(delay_s=0.05)

    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(
            model, max_batch_size=1, max_wait_s=0.0, queue_size=16, metrics=ServiceMetrics()
        )
        batcher.start()
        tasks = [asyncio.create_task(batcher.submit(i, timeout_s=5)) for i in range(5)]
        await asyncio.sleep(0.01)
        await batcher.stop(drain_timeout_s=5)
        assert [(await t).value for t in tasks] == [0, 2, 4, 6, 8]
        with pytest.raises(Rejected) as caught:
            await batcher.submit(9, timeout_s=5)
        assert caught.value.reason == "shutting_down"

    asyncio.run(main())


# -- the service's batching policy ----------------------------------------------------------


@pytest.mark.parametrize(("device", "batch_size", "queue_size"), [("cpu", 4, 16), ("cuda", 8, 64)])
def test_the_policy_defaults_depend_on_the_device(
    device: str, batch_size: int, queue_size: int
) -> None:
    policy = BatchingPolicy.of(Settings(), torch.device(device))
    assert (policy.max_batch_size, policy.queue_size) == (batch_size, queue_size)


def test_the_settings_override_the_device_defaults() -> None:
    settings = Settings(max_batch_size=1, queue_size=2, max_wait_ms=250, request_timeout_s=3)
    policy = BatchingPolicy.of(settings, torch.device("cuda"))
    assert (policy.max_batch_size, policy.queue_size) == (1, 2)
    assert policy.max_wait_s == 0.25 and policy.request_timeout_s == 3
    assert policy.max_batch_pixels == Settings().max_image_side ** 2  # one largest image
    assert policy.max_queued_pixels == QUEUED_LARGEST_IMAGES * Settings().max_image_side ** 2
    pixels = BatchingPolicy.of(Settings(max_batch_pixels=640 * 480), torch.device("cpu"))
    assert pixels.max_batch_pixels == 640 * 480
    queued = BatchingPolicy.of(Settings(max_queued_pixels=10**6), torch.device("cpu"))
    assert queued.max_queued_pixels == 10**6


def test_group_mode_groups_by_image_shape_and_pad_mode_not_at_all() -> None:
    group = BatchingPolicy.of(Settings(batch_mode="group"), torch.device("cpu")).group_key
    assert group is not None
    assert group(np.zeros((4, 6, 3))) == group(np.ones((4, 6, 3))) != group(np.zeros((6, 4, 3)))
    assert BatchingPolicy.of(Settings(batch_mode="pad"), torch.device("cpu")).group_key is None
