"""Slow and unfinished connections against the real server (uvicorn with
``service.connections``): half-open requests are closed by the header and body timeouts, the
connection cap closes the ones beyond it at once, and others are served meanwhile."""

from __future__ import annotations

import selectors
import socket
import time

import httpx
import pytest

from service.testing import ServerProcess, encode, random_image

HALF_OPEN = 60
"""Connections of each kind: partial headers; headers and part of the body."""
MAX_CONNECTIONS = 2 * HALF_OPEN + 20
DEADLINE_S = 90.0
"""Only a safety net: the test waits for the connections to close, not for time to pass."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    tmp = tmp_path_factory.mktemp("connections")
    settings = {
        "weights": str(tmp / "missing.safetensors"),
        "untrained_config": "tiny",
        "device": "cpu",
        "runtime": "torch",
        "torch_threads": "1",
        "header_timeout_s": "2",
        "body_timeout_s": "2",
        "max_connections": str(MAX_CONNECTIONS),
    }
    with ServerProcess(settings, log_path=tmp / "server.log") as process:
        yield process


def open_socket(server: ServerProcess, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(data)
    return sock


def read_until_closed(sockets: list[socket.socket]) -> dict[socket.socket, bytes]:
    """Everything each socket receives until the server closes it (AssertionError if some
    stay open past ``DEADLINE_S``)."""
    received = {sock: b"" for sock in sockets}
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + DEADLINE_S
    while selector.get_map():
        assert time.monotonic() < deadline, f"{len(selector.get_map())} connections still open"
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                received[sock] += chunk
            else:
                selector.unregister(sock)
                sock.close()
    return received


def test_half_open_requests_are_closed_while_others_are_served(server: ServerProcess) -> None:
    partial_headers = [
        open_socket(server, b"POST /densepose HTTP/1.1\r\nHost: x\r\nContent-Ty")
        for _ in range(HALF_OPEN)
    ]
    partial_bodies = [
        open_socket(
            server,
            b"POST /densepose HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"\x89PNG" + bytes(1000),
        )
        for _ in range(HALF_OPEN)
    ]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/healthz").status_code == 200
        answer = client.post(
            "/densepose", content=encode(random_image(0)), headers={"content-type": "image/png"}
        )
        assert answer.status_code == 200, answer.text

    received = read_until_closed(partial_headers + partial_bodies)

    for sock in partial_headers:
        assert received[sock].startswith(b"HTTP/1.1 408 "), received[sock][:80]
    for sock in partial_bodies:  # closed mid-body: no answer, or the 503 of a full queue
        assert received[sock] == b"" or received[sock].startswith(b"HTTP/1.1 503 ")
    assert "Traceback" not in server.log


def test_connections_beyond_the_cap_are_closed_at_once(server: ServerProcess) -> None:
    """``MAX_CONNECTIONS`` + 30 idle connections: at least 30 are closed with no answer (the
    cap), the others with a 408 once their header deadline passes."""
    sockets = [open_socket(server, b"") for _ in range(MAX_CONNECTIONS + 30)]
    received = read_until_closed(sockets)
    answers = list(received.values())
    assert answers.count(b"") >= 30
    assert sum(a.startswith(b"HTTP/1.1 408 ") for a in answers) >= MAX_CONNECTIONS - 30
    assert all(a == b"" or a.startswith(b"HTTP/1.1 408 ") for a in answers)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/healthz").status_code == 200


def test_the_header_deadline_is_per_request_not_per_connection(server: ServerProcess) -> None:
    """Three requests on one kept-alive connection, 1.5 s apart (3 s in all, over the 2 s
    header deadline): each is answered, none with 408."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        for _ in range(3):
            sock.sendall(request)
            answer = read_response(sock)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
            time.sleep(1.5)


def read_response(sock: socket.socket) -> bytes:
    """One whole response (headers, then content-length bytes of body) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data[:80]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return head + b"\r\n\r\n" + body
