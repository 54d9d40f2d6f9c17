"""The batcher with a fake model: batch windows, refusals, deadlines, cancellation, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence

import pytest

from service.batching import Batcher, Rejected
from service.metrics import ServiceMetrics


class FakeModel:
    """Doubles its inputs; records every batch; fails batches containing ``poison``."""

    def __init__(self, *, delay_s: float = 0.0, poison: int | None = None) -> None:
        self.delay_s = delay_s
        self.poison = poison
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> Sequence[int]:
        with self.lock:
            self.batches.append(list(items))
        time.sleep(self.delay_s)
        if self.poison in items:
            raise ValueError(f"cannot process {self.poison}")
        return [2 * item for item in items]

    @property
    def computed(self) -> list[int]:
        return sorted(item for batch in self.batches for item in batch)


def run(
    model: FakeModel,
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
        result = await batcher.submit(1, timeout_s=5)
        assert result.value == 2 and result.batch_size == 1
        assert 0.04 <= time.monotonic() - start < 1.0
        assert result.queue_s >= 0.0

    run(model, scenario, max_wait_s=0.05)


def test_full_queue_is_refused_at_once_with_retry_after() -> None:
    model = FakeModel(delay_s=0.2)

    async def scenario(batcher: Batcher[int, int]) -> None:
        tasks = [asyncio.create_task(batcher.submit(0, timeout_s=5))]
        await asyncio.sleep(0.05)  # item 0 running
        tasks += [asyncio.create_task(batcher.submit(i, timeout_s=5)) for i in (1, 2, 3)]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, Rejected)]
        assert len(refused) == 1 and refused[0].reason == "queue_full"
        assert refused[0].retry_after_s >= 1

    metrics = run(model, scenario, max_batch_size=1, max_wait_s=0.0, queue_size=2)
    assert rejected(metrics, "queue_full") == 1
    assert model.computed == [0, 1, 2]


def test_request_past_its_deadline_is_not_computed() -> None:
    model = FakeModel(delay_s=0.3)

    async def scenario(batcher: Batcher[int, int]) -> None:
        first = asyncio.create_task(batcher.submit(0, timeout_s=5))
        await asyncio.sleep(0.05)
        with pytest.raises(Rejected) as caught:
            await batcher.submit(1, timeout_s=0.1)
        assert caught.value.reason == "deadline"
        assert (await first).value == 0

    metrics = run(model, scenario, max_batch_size=1, max_wait_s=0.0)
    assert model.computed == [0]
    assert rejected(metrics, "deadline") == 1


def test_cancelled_request_is_dropped_before_its_batch() -> None:
    model = FakeModel(delay_s=0.2)

    async def scenario(batcher: Batcher[int, int]) -> None:
        first = asyncio.create_task(batcher.submit(0, timeout_s=5))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(batcher.submit(1, timeout_s=5))
        kept = asyncio.create_task(batcher.submit(2, timeout_s=5))
        await asyncio.sleep(0.01)
        gone.cancel()
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


def test_groups_run_separately() -> None:
    model = FakeModel()

    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(
            model,
            max_batch_size=8,
            max_wait_s=0.05,
            queue_size=16,
            metrics=ServiceMetrics(),
            group_key=lambda item: item % 2,
        )
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(i, timeout_s=5) for i in range(6)))
        assert [r.value for r in results] == [0, 2, 4, 6, 8, 10]
        await batcher.stop(drain_timeout_s=1)

    asyncio.run(main())
    assert model.batches == [[0, 2, 4], [1, 3, 5]]


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
