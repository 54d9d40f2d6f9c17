"""The queue-full gate (``service/admission.py``): with the queue full, ``POST /densepose`` is
answered 503 before FastAPI routes it (so before its query is validated or its body read),
and the refusal is still counted under the route's endpoint label."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from load_tests.metrics import parse, total
from service.app import create_app
from service.settings import Settings
from service.testing import encode, random_image

PNG = {"content-type": "image/png"}
SAFETY_S = 60.0
"""Only a safety net: the wait below is for a condition, not for time."""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        weights=tmp_path / "missing.safetensors",
        untrained_config="tiny",
        device="cpu",
        runtime="torch",
        warmup=False,
        queue_size=2,
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
