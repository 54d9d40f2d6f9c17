"""Work on a request stops once its deadline has passed: before the forward pass, between two
persons (or bands of one) of post-processing, between two persons of encoding; the other
requests of its batch are answered. And the 75-channel resample runs in bounded bands.

No test waits for time: deadlines run on a fake clock that a test (or a spy at a chosen step
of the work) moves past them, and what was done is counted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from test_service_batching import run, until  # tests/test_service_batching.py

import service.formats
import service.routes.densepose
import service.schemas
import service.state
from model.config import NUM_PART_CLASSES
from model.inference import postprocess
from model.inference.deadline import NO_DEADLINE, Deadline, DeadlineExceeded
from model.inference.images import DecodedImage
from model.inference.postprocess import image_result, result_bytes, to_results
from model.inference.predictor import Predictor
from model.inference.preprocess import PreparedBatch
from model.structures import DDPOutput, DensePoseResult, Detections
from service.app import create_app
from service.batching import Batcher, Rejected
from service.formats import FORMATS
from service.loading import load_predictor
from service.metrics import ServiceMetrics
from service.settings import Settings
from service.testing import encode, random_image, tiny_checkpoint

SAFETY_S = 60.0
"""Only a safety net for the waits below: each waits for a condition, not for time."""
BATCHER_OPTIONS = {"max_batch_size": 2, "max_wait_s": SAFETY_S, "queue_size": 4}
"""Two requests per batch, a window that only a full batch closes."""
K = NUM_PART_CLASSES


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rejected(metrics: ServiceMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("ddp_rejected_requests_total", {"reason": reason})
    return value or 0.0


# -- post-processing ---------------------------------------------------------------------------


def _three_persons(size: int = 16) -> tuple[DDPOutput, PreparedBatch]:
    """One (size, size) image at scale 2 (network input 2·size), three persons whose masks
    and M_dp cover their boxes; charts: part 5 left, part 7 right."""
    cells = size // 2
    iuv = torch.zeros(1, 3 * K, cells, cells)
    iuv[0, 5, :, : cells // 2], iuv[0, 7, :, cells // 2 :] = 10.0, 10.0
    iuv[0, K + 5], iuv[0, 2 * K + 5] = 0.25, 0.75
    mask_logits = torch.full((3, 2, cells, cells), 10.0)
    side = 2.0 * size
    boxes = [[0.0, 0.0, side, side], [4.0, 4.0, 20.0, 24.0], [2.0, 2.0, 10.0, 10.0]]
    detections = Detections(
        image_index=torch.zeros(3, dtype=torch.int64),
        boxes_xyxy=torch.tensor(boxes),
        scores=torch.tensor([0.9, 0.8, 0.7]),
        mask_logits=mask_logits,
    )
    output = DDPOutput(
        detections, iuv, torch.ones(1, cells, cells, dtype=torch.bool), torch.tensor([[32, 32]])
    )
    batch = PreparedBatch(
        images=torch.zeros(1, 3, 2 * size, 2 * size),
        image_sizes=torch.tensor([[2 * size, 2 * size]]),
        original_sizes=torch.tensor([[size, size]]),
        scales=torch.tensor([2.0]),
    )
    return output, batch


def _count_windows(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock | None = None, *, at_call: int = 0
) -> list[int]:
    """Count ``positive_window`` calls (two per person: its mask's, then its M_dp's); at call
    ``at_call``, ``clock`` moves 1000 s on."""
    calls = [0]
    original = postprocess.positive_window

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if clock is not None and calls[0] == at_call:
            clock.now += 1000.0
        return original(*args, **kwargs)

    monkeypatch.setattr(postprocess, "positive_window", counted)
    return calls


def test_post_processing_past_its_deadline_processes_no_person(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output, batch = _three_persons()
    clock = FakeClock()
    clock.now = 5.0
    calls = _count_windows(monkeypatch)
    with pytest.raises(DeadlineExceeded, match="person 1 of 3"):
        image_result(output, batch, 0, mask_threshold=0.5, deadline=Deadline(1.0, clock))
    assert calls == [0]


def test_a_deadline_passing_inside_a_person_stops_before_its_charts_and_the_next_person(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deadline passes after the first person's mask, as its M_dp window is found."""
    output, batch = _three_persons()
    clock = FakeClock()
    calls = _count_windows(monkeypatch, clock, at_call=2)
    resampled: list[int] = []
    original = postprocess._resample

    def recorded(logits: torch.Tensor, *args: Any) -> torch.Tensor:
        resampled.append(logits.shape[1])  # channels
        return original(logits, *args)

    monkeypatch.setattr(postprocess, "_resample", recorded)
    with pytest.raises(DeadlineExceeded, match="person 1 of 3"):
        image_result(output, batch, 0, mask_threshold=0.5, deadline=Deadline(1.0, clock))
    assert calls == [2]  # person 1's two windows, no more
    assert resampled == [1]  # its mask only: no 75-channel resample


def test_an_image_without_persons_is_answered_whatever_its_deadline() -> None:
    output, batch = _three_persons()
    nobody = output.detections[output.detections.scores > 1.0]
    output = DDPOutput(nobody, output.iuv_logits, output.active, output.image_sizes)
    clock = FakeClock()
    clock.now = 5.0
    result = image_result(output, batch, 0, mask_threshold=0.5, deadline=Deadline(1.0, clock))
    assert len(result) == 0 and result.masks.shape == (0, 16, 16)


def test_charts_are_resampled_in_bands_of_bounded_pixels_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With bands of 40 pixels, no resample (mask or charts) covers more than 40 pixels (one
    row of 16 at least), and the result equals the one made in a single band."""
    output, batch = _three_persons()
    (whole,) = to_results(output, batch, mask_threshold=0.5)
    sizes: list[int] = []
    original = postprocess._resample

    def recorded(
        logits: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], scale: float
    ) -> torch.Tensor:
        sizes.append(size[0] * size[1])
        return original(logits, boxes, size, scale)

    monkeypatch.setattr(postprocess, "_resample", recorded)
    monkeypatch.setattr(postprocess, "RESAMPLE_BAND_PIXELS", 40)
    (banded,) = to_results(output, batch, mask_threshold=0.5)
    assert sizes and max(sizes) <= 40
    assert len(sizes) > 2 * len(banded)  # the large persons took several bands
    assert torch.equal(banded.masks, whole.masks)
    for i in range(len(whole)):
        assert torch.equal(banded.parts[i], whole.parts[i])
        torch.testing.assert_close(banded.uv[i], whole.uv[i], rtol=0, atol=1e-6)


def test_result_bytes_is_what_a_result_holds() -> None:
    output, batch = _three_persons()
    (result,) = to_results(output, batch, mask_threshold=0.5)
    areas = [(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in result.integer_boxes().tolist()]
    held = result.masks.nbytes + sum(t.nbytes for t in [*result.parts, *result.uv])
    assert result_bytes(16, 16, areas) == held


# -- the predictor: one deadline per image -------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    path = tiny_checkpoint(tmp_path_factory.mktemp("deadlines") / "tiny.safetensors")
    return Predictor.from_checkpoint(path, device="cpu")


def _count_forwarded(predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of images of each forward pass of ``predictor`` from now on."""
    forwarded: list[int] = []
    original = predictor.forward

    def forward(images: Sequence[np.ndarray]) -> Any:
        forwarded.append(len(images))
        return original(images)

    monkeypatch.setattr(predictor, "forward", forward)
    return forwarded


def _same(a: DensePoseResult, b: DensePoseResult) -> bool:
    return (
        torch.equal(a.masks, b.masks)
        and all(torch.equal(x, y) for x, y in zip(a.parts, b.parts, strict=True))
        and all(torch.equal(x, y) for x, y in zip(a.uv, b.uv, strict=True))
    )


def test_an_image_past_its_deadline_is_left_out_and_the_other_is_computed(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [random_image(0), random_image(1)]
    (alone,) = predictor([images[1]])
    forwarded = _count_forwarded(predictor, monkeypatch)
    clock = FakeClock()
    clock.now = 5.0
    late, answered = predictor.run_batch(images, [Deadline(1.0, clock), NO_DEADLINE])
    assert isinstance(late, DeadlineExceeded) and "before the forward pass" in str(late)
    assert isinstance(answered, DensePoseResult) and len(answered) == 3
    assert _same(answered, alone)
    assert forwarded == [1]


def test_a_deadline_passing_in_post_processing_fails_its_image_alone(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two images of one batch, 3 persons each; image 0's deadline passes during its first
    person: it stops there (2 of its 6 windows), image 1 (a later deadline) is computed in
    full."""
    images = [random_image(2), random_image(3)]
    expected = predictor(images)
    clock = FakeClock()
    calls = _count_windows(monkeypatch, clock, at_call=2)
    stopped, answered = predictor.run_batch(images, [Deadline(1.0, clock), Deadline(5000.0, clock)])
    assert isinstance(stopped, DeadlineExceeded) and "in post-processing" in str(stopped)
    assert isinstance(answered, DensePoseResult) and _same(answered, expected[1])
    assert calls == [2 + 6]


# -- the batcher: a batch mixes deadlines ------------------------------------------------------


class DeadlineAwareFake:
    """Doubles its items unless an item's deadline has passed (then ``DeadlineExceeded``);
    fails item ``poison`` alone by answering an exception for it; holds every batch until
    ``release`` is set. Records the batches and the deadlines it was given."""

    def __init__(self, *, poison: int | None = None) -> None:
        self.poison = poison
        self.release = threading.Event()
        self.batches: list[list[int]] = []
        self.deadlines: list[list[Deadline]] = []

    def run_batch(
        self, items: Sequence[int], deadlines: Sequence[Deadline]
    ) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.deadlines.append(list(deadlines))
        assert self.release.wait(SAFETY_S), "the test never released the model"
        outputs: list[int | BaseException] = []
        for item, deadline in zip(items, deadlines, strict=True):
            if deadline.expired:
                outputs.append(DeadlineExceeded("the deadline passed in the fake model"))
            elif item == self.poison:
                outputs.append(ValueError(f"cannot process {item}"))
            else:
                outputs.append(2 * item)
        return outputs




def test_a_request_expiring_in_the_model_gets_deadline_and_its_batch_mate_its_result() -> None:
    model = DeadlineAwareFake()
    clock = FakeClock()
    early, late = Deadline(30.0, clock), Deadline(1000.0, clock)

    async def scenario(batcher: Batcher[int, int]) -> None:
        first = asyncio.create_task(batcher.submit(1, deadline=early))
        second = asyncio.create_task(batcher.submit(2, deadline=late))
        await until(lambda: len(model.batches) == 1)  # both in one batch, held
        clock.now = 40.0  # the first one's deadline passes while the model works
        model.release.set()
        with pytest.raises(Rejected) as caught:
            await first
        assert caught.value.reason == "deadline"
        assert "in the fake model" in caught.value.message
        assert (await second).value == 4

    metrics = run(model, scenario, **BATCHER_OPTIONS)
    assert model.batches == [[1, 2]]
    assert model.deadlines == [[early, late]]  # the batcher handed over each item's own
    assert rejected(metrics, "deadline") == 1


def test_an_exception_answered_for_one_item_fails_that_request_alone() -> None:
    model = DeadlineAwareFake(poison=3)
    model.release.set()

    async def scenario(batcher: Batcher[int, int]) -> None:
        outcomes = await asyncio.gather(
            batcher.submit(3, timeout_s=SAFETY_S),
            batcher.submit(4, timeout_s=SAFETY_S),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], ValueError)
        assert getattr(outcomes[1], "value", None) == 8

    run(model, scenario, **BATCHER_OPTIONS)
    assert model.batches == [[3, 4]]  # one call: no retry one by one


def test_submit_takes_a_timeout_or_a_deadline_not_both() -> None:
    model = DeadlineAwareFake()
    model.release.set()

    async def scenario(batcher: Batcher[int, int]) -> None:
        with pytest.raises(TypeError):
            await batcher.submit(1, timeout_s=1.0, deadline=NO_DEADLINE)
        with pytest.raises(TypeError):
            await batcher.submit(1)

    run(model, scenario, **BATCHER_OPTIONS)
    assert model.batches == []


# -- encoding -------------------------------------------------------------------------------------


def _result(persons: int = 3, size: int = 12) -> DensePoseResult:
    generator = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[0.0, 0.0, size, size]] * persons)
    parts = [
        torch.randint(0, 25, (size, size), generator=generator, dtype=torch.uint8)
        for _ in range(persons)
    ]
    return DensePoseResult(
        boxes_xyxy=boxes,
        scores=torch.linspace(0.9, 0.5, persons),
        masks=torch.stack([p > 0 for p in parts]),
        parts=parts,
        uv=[torch.rand(2, size, size, generator=generator) * (p > 0) for p in parts],
    )


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_stops_encoding_past_the_deadline(name: str) -> None:
    result = _result()
    image = DecodedImage(np.zeros((12, 12, 3), np.uint8), (12, 12))
    clock = FakeClock()
    clock.now = 5.0
    with pytest.raises(DeadlineExceeded, match="person 1 of 3"):
        FORMATS[name].encode(result, image, ("mask", "iuv"), Deadline(1.0, clock))
    FORMATS[name].encode(result, image, ("mask", "iuv"), Deadline(10.0, clock))  # in time: done


def test_json_encoding_stops_within_one_person(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    encoded: list[int] = []
    original = service.schemas.encode_mask_png

    def one_person(mask: Any) -> Any:  # a person's first PNG
        encoded.append(1)
        clock.now = 2.0  # the deadline passes while the first person is encoded
        return original(mask)

    monkeypatch.setattr(service.schemas, "encode_mask_png", one_person)
    image = DecodedImage(np.zeros((12, 12, 3), np.uint8), (12, 12))
    with pytest.raises(DeadlineExceeded, match="person 2 of 3"):
        FORMATS["json"].encode(_result(), image, ("mask", "iuv"), Deadline(1.0, clock))
    assert encoded == [1]


# -- the service: 504, counted once, no work left behind ------------------------------------------


class HeldDeadlineAware:
    """The app's model: ``run_batch`` waits until ``release`` is set, then runs the wrapped
    ``Predictor``'s; ``outcomes`` collects what it answered."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.device = predictor.device
        self.release = threading.Event()
        self.calls = 0
        self.outcomes: list[DensePoseResult | DeadlineExceeded] = []
        self.forwarded: list[int] = []

    def __call__(self, images_rgb: list[np.ndarray]) -> list[DensePoseResult]:
        return self.predictor(images_rgb)

    def run_batch(
        self, images_rgb: Sequence[np.ndarray], deadlines: Sequence[Deadline]
    ) -> list[DensePoseResult | DeadlineExceeded]:
        self.calls += 1
        assert self.release.wait(SAFETY_S), "the test never released the model"
        outcomes = self.predictor.run_batch(images_rgb, deadlines)
        self.outcomes += outcomes
        return outcomes


def _until_sync(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + SAFETY_S
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    options: dict[str, Any] = {
        "weights": tmp_path / "missing.safetensors",
        "untrained_config": "tiny",
        "device": "cpu",
        "runtime": "torch",
        "warmup": False,
        "max_batch_size": 1,
        "max_wait_ms": 0,
    }
    return Settings(**(options | overrides))


def _deadlines_on(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The route makes its requests' deadlines on ``clock``: the batcher and the model see
    time pass only when the test moves it; the caller's own timer still runs for the
    deadline's remaining seconds when it was made."""

    class FakeClockDeadline:
        @staticmethod
        def after(seconds: float) -> Deadline:
            return Deadline(clock.now + seconds, clock)

    monkeypatch.setattr(service.routes.densepose, "Deadline", FakeClockDeadline)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    _deadlines_on(clock, monkeypatch)
    return clock


@pytest.fixture
def held_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, HeldDeadlineAware]]:
    settings = _settings(tmp_path, request_timeout_s=0.2)
    predictor, info = load_predictor(settings)
    held = HeldDeadlineAware(predictor)
    held.forwarded = _count_forwarded(predictor, monkeypatch)
    monkeypatch.setattr(service.state, "load_predictor", lambda _: (held, info))
    with TestClient(create_app(settings)) as client:
        _until_sync(lambda: client.get("/readyz").status_code == 200)
        yield client, held
    held.release.set()


def _deadline_rejections(client: TestClient) -> float:
    metrics = client.app.state.service.metrics  # type: ignore[attr-defined]
    return rejected(metrics, "deadline")


def test_a_request_timing_out_in_the_model_gets_504_and_leaves_no_work_behind(
    clock: FakeClock, held_app: tuple[TestClient, HeldDeadlineAware]
) -> None:
    """The request enters the model (its fake-clock deadline has not passed for the batcher)
    and is held there until its caller's timer (0.2 s) answers 504 ``deadline``, counted
    once; its deadline passed, the released model thread answers it without a forward pass
    (and the batcher does not count it again)."""
    client, held = held_app
    answer = client.post(
        "/densepose", content=encode(random_image(0)), headers={"content-type": "image/png"}
    )
    assert answer.status_code == 504, answer.text
    assert answer.json()["error"]["code"] == "deadline"
    assert held.calls == 1
    clock.now = 1.0
    held.release.set()
    _until_sync(lambda: len(held.outcomes) == 1)
    assert isinstance(held.outcomes[0], DeadlineExceeded)
    assert held.forwarded == []
    assert _deadline_rejections(client) == 1


def test_a_deadline_passing_while_encoding_is_504_and_stops_the_encoder(
    clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request's deadline (on a fake clock) passes while its first person is encoded:
    504 ``deadline``, counted once, and the other two persons are not encoded."""
    encoded: list[int] = []
    original = service.schemas.encode_mask_png

    def one_person(mask: Any) -> Any:  # a person's first PNG
        encoded.append(1)
        clock.now += 1000.0
        return original(mask)

    monkeypatch.setattr(service.schemas, "encode_mask_png", one_person)
    weights = tiny_checkpoint(tmp_path / "tiny.safetensors")  # 3 persons in every image
    with TestClient(create_app(_settings(tmp_path, weights=weights))) as client:
        _until_sync(lambda: client.get("/readyz").status_code == 200)
        answer = client.post(
            "/densepose", content=encode(random_image(1)), headers={"content-type": "image/png"}
        )
        assert answer.status_code == 504, answer.text
        assert answer.json()["error"]["code"] == "deadline"
        assert "in encoding, at person 2 of 3" in answer.json()["error"]["message"]
        assert encoded == [1]
        assert _deadline_rejections(client) == 1
