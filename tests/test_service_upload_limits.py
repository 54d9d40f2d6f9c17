"""Upload byte limits hold while the body streams: a chunked body (no Content-Length) over
the limit gets 413 after at most the limit and one chunk were read, on both upload endpoints,
multipart or raw. The app is driven as ASGI, so the test counts the body chunks it took."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from service.testing import encode, random_image, tiny_checkpoint
from service.uploads import MULTIPART_OVERHEAD_BYTES

LIMIT_BYTES = 100_000
CHUNK_BYTES = 16 * 1024
OFFERED_CHUNKS = 1000  # 16 MiB: far over the limit
BOUNDARY = "limit-test-boundary"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    weights = tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors")
    settings = Settings(
        weights=weights,
        device="cpu",
        max_upload_bytes=LIMIT_BYTES,
        video_max_bytes=LIMIT_BYTES,
        video_jobs_root=tmp_path_factory.mktemp("jobs"),
    )
    with TestClient(create_app(settings)) as test_client:
        deadline = time.monotonic() + 60
        while test_client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield test_client


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
PART_HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n'
    "Content-Type: application/octet-stream\r\n\r\n"
).encode()


def _endless(content_type: str) -> Iterator[bytes]:
    """A body of ``OFFERED_CHUNKS`` chunks: for multipart, a ``file`` part that never ends."""
    if content_type == MULTIPART:
        yield PART_HEAD
    for _ in range(OFFERED_CHUNKS):
        yield b"\xff" * CHUNK_BYTES


def _post_chunked(
    client: TestClient, path: str, content_type: str, chunks: Iterator[bytes]
) -> tuple[int, int]:
    """POST a chunked body straight to the ASGI app: the status and the body bytes it read."""
    read_bytes = 0
    status: list[int] = []

    ended = False

    async def receive() -> dict[str, Any]:
        nonlocal read_bytes, ended
        if ended:  # the body was sent: the client waits for the answer
            await asyncio.Event().wait()
        chunk = next(chunks, b"")
        read_bytes += len(chunk)
        ended = not chunk
        return {"type": "http.request", "body": chunk, "more_body": not ended}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", content_type.encode()),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }

    async def call() -> None:
        await client.app(scope, receive, send)

    assert client.portal is not None
    client.portal.call(call)
    return status[0], read_bytes


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/densepose", MULTIPART),
        ("/densepose", "image/png"),
        ("/densepose/video", MULTIPART),
        ("/densepose/video", "video/mp4"),
    ],
)
def test_a_chunked_upload_over_the_limit_stops_at_the_limit(
    client: TestClient, path: str, content_type: str
) -> None:
    status, read_bytes = _post_chunked(client, path, content_type, _endless(content_type))
    assert status == 413
    # at most the limit, the multipart overhead, the part's head and the chunk that crossed
    assert read_bytes <= LIMIT_BYTES + MULTIPART_OVERHEAD_BYTES + len(PART_HEAD) + CHUNK_BYTES


def test_a_chunked_multipart_image_within_the_limit_is_answered(client: TestClient) -> None:
    image = encode(random_image(0))
    body = PART_HEAD + image + f"\r\n--{BOUNDARY}--\r\n".encode()
    chunks = iter([body[i : i + 1000] for i in range(0, len(body), 1000)])
    status, read_bytes = _post_chunked(client, "/densepose", MULTIPART, chunks)
    assert status == 200
    assert read_bytes == len(body)
