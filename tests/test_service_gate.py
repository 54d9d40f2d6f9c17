"""The queue-full gate (``service/admission.py``): with the queue full, ``POST /densepose`` is
answered 503 before FastAPI routes it (so before its query is validated or its body read),
and the refusal is still counted under the route's endpoint label."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from load_tests.metrics import parse, total
from service.admission import RefusalPacer
from service.app import create_app
from service.settings import Settings
from service.testing import encode, random_image

PNG = {"content-type": "image/png"}
SAFETY_S = 60.0
"""Only a safety net: the wait below is for a condition, not for time."""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path)


def _client(tmp_path: Path, **overrides: Any) -> Iterator[TestClient]:
    settings = Settings(
        weights=tmp_path / "missing.safetensors",
        untrained_config="tiny",
        device="cpu",
        runtime="torch",
        warmup=False,
        **({"queue_size": 2} | overrides),
    )
    with TestClient(create_app(settings)) as test_client:
        deadline = time.monotonic() + SAFETY_S
        while test_client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the model never got ready"
            time.sleep(0.01)
        yield test_client


def fill_queue(client: TestClient) -> None:
    """Every place of the queue (2) held, as by requests being decoded."""
    batcher = client.app.state.service.model.batcher  # type: ignore[attr-defined]
    batcher.reserve()
    batcher.reserve()


def requests_counted(client: TestClient, endpoint: str, status: str) -> float:
    families = parse(client.get("/metrics").text)
    return total(families, "ddp_requests_total", endpoint=endpoint, status=status)


def test_the_gate_refuses_before_the_query_is_validated(client: TestClient) -> None:
    """An invalid option gets 422 from the route while there is room, but 503 queue_full
    from the gate while the queue is full: the route never saw the request."""
    png = encode(random_image(0))
    assert client.post("/densepose?max_persons=0", content=png, headers=PNG).status_code == 422
    fill_queue(client)

    refused = client.post("/densepose?max_persons=0", content=png, headers=PNG)

    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1


def test_a_refusal_at_the_gate_is_counted_under_the_route(client: TestClient) -> None:
    fill_queue(client)
    before = requests_counted(client, "/densepose", "5xx")

    for _ in range(3):
        client.post("/densepose", content=encode(random_image(1)), headers=PNG)

    assert requests_counted(client, "/densepose", "5xx") == before + 3


def test_other_routes_pass_the_gate_while_the_queue_is_full(client: TestClient) -> None:
    fill_queue(client)
    assert client.get("/v1/model").status_code == 200
    assert client.get("/healthz").status_code == 200


def test_the_refusal_pacer_gives_a_second_s_worth_at_once_then_paces() -> None:
    now = [100.0]
    pacer = RefusalPacer(4.0, clock=lambda: now[0])
    assert [pacer.delay_s() for _ in range(6)] == pytest.approx([0, 0, 0, 0, 0.25, 0.5])
    now[0] += 0.5  # two turns passed: the next waits for the turns still ahead of it
    assert pacer.delay_s() == pytest.approx(0.25)
    now[0] += 10.0  # a quiet spell refills the bucket, no more than a second's worth
    assert [pacer.delay_s() for _ in range(5)] == pytest.approx([0, 0, 0, 0, 0.25])
    with pytest.raises(ValueError, match="rate_per_s"):
        RefusalPacer(0.0)


@pytest.fixture
def paced_client(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path, refusals_per_s=2.0)


def test_refusals_beyond_the_rate_wait_their_turn(paced_client: TestClient) -> None:
    fill_queue(paced_client)
    png = encode(random_image(1))
    started = time.monotonic()
    statuses = [paced_client.post("/densepose", content=png, headers=PNG).status_code]
    statuses += [paced_client.post("/densepose", content=png, headers=PNG).status_code]
    statuses += [paced_client.post("/densepose", content=png, headers=PNG).status_code]
    # Two a second at once, the third at its turn: half a second after the first at least.
    assert statuses == [503, 503, 503]
    assert time.monotonic() - started >= 0.49
    assert requests_counted(paced_client, "/densepose", "5xx") == 3


def test_a_paced_refusal_is_let_through_when_the_queue_has_room_by_its_turn(
    paced_client: TestClient,
) -> None:
    batcher = paced_client.app.state.service.model.batcher  # type: ignore[attr-defined]
    places = [batcher.reserve(), batcher.reserve()]
    png = encode(random_image(2))
    for _ in range(2):  # the bucket's second's worth, answered at once
        assert paced_client.post("/densepose", content=png, headers=PNG).status_code == 503
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(paced_client.post, "/densepose", content=png, headers=PNG)
        places[0].release()  # room in the queue before the third one's turn (0.5 s away)
        answer = waiting.result(timeout=SAFETY_S)
    assert answer.status_code == 200, answer.text
    assert requests_counted(paced_client, "/densepose", "5xx") == 2  # counted once each


QUEUED_PIXELS = 96 * 128 + 1000
"""The pixel bound of ``pixel_bounded_client``'s queue: one 96 x 128 image and a small one."""


@pytest.fixture
def pixel_bounded_client(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path, queue_size=8, max_batch_size=1, max_queued_pixels=QUEUED_PIXELS)


def test_the_queue_is_bounded_by_its_images_pixels(pixel_bounded_client: TestClient) -> None:
    """A queue of 8 places but 96 x 128 + 1,000 pixels: with one image queued (the model
    thread held, one more image taken out of the queue for it), a second of the same size is
    refused at once after its decode, naming the pixels; a small one still gets in; every
    admitted image is answered once the model is free. The pixels are on /metrics."""
    client = pixel_bounded_client
    batcher = client.app.state.service.model.batcher  # type: ignore[attr-defined]
    pixels = 96 * 128
    release = threading.Event()
    big, small = encode(random_image(3)), encode(random_image(4, 16, 16))
    with ThreadPoolExecutor(4) as pool:
        held = pool.submit(batcher.run_in_model_thread, lambda: release.wait(SAFETY_S))
        answers = [pool.submit(client.post, "/densepose", content=big, headers=PNG)]
        wait_for(lambda: metric(client, "ddp_queue_wait_seconds_count") == 1)  # taken out
        answers.append(pool.submit(client.post, "/densepose", content=big, headers=PNG))
        wait_for(lambda: batcher.queued_cost == pixels)

        refused = client.post("/densepose", content=big, headers=PNG)
        answers.append(pool.submit(client.post, "/densepose", content=small, headers=PNG))
        wait_for(lambda: batcher.queued_cost == pixels + 16 * 16)
        queued = metric(client, "ddp_queue_pixels")
        release.set()
        held.result(timeout=SAFETY_S)
        statuses = [answer.result(timeout=SAFETY_S).status_code for answer in answers]

    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "queue_full"
    assert f"holds {pixels:,} pixels" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert queued == pixels + 16 * 16
    assert statuses == [200, 200, 200]
    assert batcher.queued_cost == 0


def metric(client: TestClient, name: str) -> float:
    return total(parse(client.get("/metrics").text), name)


def wait_for(condition: Callable[[], object]) -> None:
    deadline = time.monotonic() + SAFETY_S
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)
