"""A CI-sized schema fuzz of the service (schemathesis, in-process ASGI, a tiny untrained
network): for requests generated from the app's own OpenAPI document, valid and invalid,
no 5xx, and every answer as the document says (status, content type, headers, body
schema)."""

from __future__ import annotations

import time
from pathlib import Path
from tempfile import mkdtemp

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from service.app import create_app
from service.decoding import MEDIA_TYPES
from service.settings import Settings
from service.testing import encode, random_image

READY_TIMEOUT_S = 120.0
"""Only a safety net for the model load below: the test waits for readiness, not time."""
MAX_EXAMPLES = 5
"""Per operation: a CI-sized run (about a minute on a 2-core CPU)."""

APP = create_app(
    Settings(
        weights=Path(mkdtemp()) / "missing.safetensors",
        untrained_config="tiny",
        device="cpu",
        runtime="torch",
        torch_threads=1,
        warmup=False,
        max_upload_bytes=1_000_000,
        max_image_pixels=4_000_000,
        max_wait_ms=0,
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(
    path_regex="^/densepose/video"
)
"""The video job routes are left out for now: their job store is being reworked."""

IMAGES = [encode(random_image(seed), name) for seed, name in enumerate(("PNG", "JPEG", "WEBP"))]
"""What a documented image body is: no JSON schema says "decodable", so the fuzzer is told."""
for media_type in (*MEDIA_TYPES.values(), "application/octet-stream"):
    schemathesis.openapi.media_type(media_type, st.sampled_from(IMAGES))


def wait_ready() -> None:
    readiness = schema["/readyz"]["GET"]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while readiness.Case().call().status_code != 200:
        assert time.monotonic() < deadline, "the service never became ready"
        time.sleep(0.05)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_answers_as_documented(case: schemathesis.Case) -> None:
    wait_ready()
    case.call_and_validate()
