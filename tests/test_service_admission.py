"""Admission before work: with the batcher's queue full, ``POST /densepose`` is refused (503,
Retry-After) before a byte of its body is read or decoded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import service.state
from service.app import create_app
from service.loading import load_predictor
from service.settings import Settings
from service.testing import HeldPredictor, encode, random_image

SAFETY_S = 60.0
"""Only a safety net for the waits below: each waits for a condition, not for time."""
PNG = {"content-type": "image/png"}


class BodyReadCounter:
    """ASGI middleware counting the body messages the app took from ``receive``, by path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.body_messages: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.body_messages[path] = self.body_messages.get(path, 0) + 1
            return message

        await self.app(scope, counted, send)


def until(condition: object) -> None:
    deadline = time.monotonic() + SAFETY_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        weights=tmp_path / "missing.safetensors",
        untrained_config="tiny",
        device="cpu",
        runtime="torch",
        warmup=False,
        max_batch_size=1,
        max_wait_ms=0,
        queue_size=1,
        max_upload_bytes=8 * 1024 * 1024,
    )


@pytest.fixture
def held(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> HeldPredictor:
    """The model the app loads: held until the test releases it."""
    predictor, info = load_predictor(settings)
    held = HeldPredictor(predictor)
    monkeypatch.setattr(service.state, "load_predictor", lambda _: (held, info))
    return held


@pytest.fixture
def client(
    settings: Settings, held: HeldPredictor
) -> Iterator[tuple[TestClient, BodyReadCounter]]:
    counter = BodyReadCounter(create_app(settings))
    with TestClient(counter) as test_client:
        until(lambda: test_client.get("/readyz").status_code == 200)
        yield test_client, counter
    held.release.set()


def post_png(client: TestClient, data: bytes) -> int:
    return client.post("/densepose", content=data, headers=PNG).status_code


def test_a_full_queue_refuses_an_upload_without_reading_its_body(
    client: tuple[TestClient, BodyReadCounter], held: HeldPredictor
) -> None:
    """One request held in the model, one queued: the queue (of 1) is full. A 6 MB upload
    then gets 503 + Retry-After and the app never took a body message from ``receive``;
    released, the two admitted requests are answered."""
    test_client, counter = client
    batcher = test_client.app.app.state.service.model.batcher  # type: ignore[attr-defined]
    png = encode(random_image(0))
    with ThreadPoolExecutor(2) as pool:
        computing = pool.submit(post_png, test_client, png)
        until(lambda: held.calls == 1)
        queued = pool.submit(post_png, test_client, png)
        until(lambda: batcher.depth == 1)
        reads_before = counter.body_messages.get("/densepose", 0)

        refused = test_client.post(
            "/densepose",
            content=b"\xff\xd8" + bytes(6 * 1024 * 1024),
            headers={"content-type": "image/jpeg"},
        )

        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "queue_full"
        assert int(refused.headers["retry-after"]) >= 1
        assert counter.body_messages.get("/densepose", 0) == reads_before
        held.release.set()
        assert computing.result(SAFETY_S) == 200
        assert queued.result(SAFETY_S) == 200
    assert counter.body_messages["/densepose"] >= 2  # the admitted ones were read: it counts


def test_a_refused_upload_leaves_the_queue_as_it_was(
    client: tuple[TestClient, BodyReadCounter], held: HeldPredictor
) -> None:
    """Refusals hold no place: after ten of them, releasing the model lets the queue drain
    and the next request is admitted and answered."""
    test_client, _ = client
    batcher = test_client.app.app.state.service.model.batcher  # type: ignore[attr-defined]
    png = encode(random_image(1))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post_png, test_client, png)
        until(lambda: held.calls == 1)
        second = pool.submit(post_png, test_client, png)
        until(lambda: batcher.depth == 1)
        statuses = [post_png(test_client, png) for _ in range(10)]
        assert statuses == [503] * 10
        held.release.set()
        assert first.result(SAFETY_S) == second.result(SAFETY_S) == 200
    assert post_png(test_client, png) == 200
