"""A keep-alive HTTP/1.1 client that sends one pre-encoded request again and again: the retry
storm's and the probe's clients (``load_tests.overload``).

A load generator that shares the service's CPUs takes its CPU from the service it measures.
httpx spends about 7 ms of CPU on each request (building it, its connection pool, parsing the
answer): a storm of 64 clients then took a third of this 2-core machine, and the served rate it
reported was the generator's as much as the service's. This client writes bytes encoded once
and reads the status line, the headers and a ``Content-Length`` or chunked body with asyncio's
streams: a few tens of microseconds a request. It speaks only what these load tests need; it is
not a general HTTP client.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


def encode_post(url: str, path: str, body: bytes, content_type: str) -> bytes:
    """The bytes of ``POST path`` to the host of ``url`` with ``body``, keep-alive."""
    host = urlsplit(url).netloc
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


class KeepAliveClient:
    """One connection to ``url``'s host and port, opened on first use and again after the
    server closed it; ``send`` writes ``request`` and returns the answer's status code."""

    def __init__(self, url: str, request: bytes, *, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"need an http:// URL with a host, got {url!r}")
        self._address = (parts.hostname, parts.port or 80)
        self._request = request
        self._timeout_s = timeout_s
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self) -> int:
        return await asyncio.wait_for(self._exchange(), self._timeout_s)

    async def close(self) -> None:
        if self._streams is not None:
            _, writer = self._streams
            self._streams = None
            writer.close()
            await writer.wait_closed()

    async def _exchange(self) -> int:
        if self._streams is None:
            self._streams = await asyncio.open_connection(*self._address)
        reader, writer = self._streams
        try:
            writer.write(self._request)
            await writer.drain()
            status, headers = await _read_head(reader)
            await _read_body(reader, headers)
        except BaseException:
            await self.close()
            raise
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status code and the headers (names lower-cased) of one answer."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection before answering")
    status = int(status_line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    """Read (and drop) the body the headers announce."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readline()).split(b";", 1)[0], 16):
            await reader.readexactly(size + 2)  # the chunk and its CRLF
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # trailers
            pass
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
