"""Limits on slow and unfinished connections, which uvicorn lacks (its issue #157: no timeout
for a request's headers or body; ``timeout_keep_alive`` only runs between requests, and
``limit_concurrency`` answers 503 to new requests but never closes a connection).

``GuardedH11Protocol`` is uvicorn's h11 protocol with, per connection:

* a **header deadline**: from the connection's start (or the first byte of a later request on
  it) to the end of the request's headers, at most ``header_timeout_s``; past it the server
  answers 408 and closes. A deadline, not an idle timeout, so a client sending a byte a second
  (slowloris) is closed as surely as one sending nothing;
* a **body idle timeout**: while the body streams, at most ``body_timeout_s`` between two
  pieces of it (nginx's ``client_body_timeout``), counted only while the server reads (not
  while the app has reading paused); past it the connection is closed;
* a **cap on open connections**: one opened beyond ``max_connections`` is closed at once;
* uvicorn's keep-alive timeout between requests, set from ``keep_alive_timeout_s``.

``ddp serve`` passes ``guarded_protocol(limits)``; ``uvicorn --http
service.connections:GuardedH11Protocol`` reads the limits from the ``DDP_`` environment.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from service.settings import Settings, get_settings

logger = logging.getLogger(__name__)

ReadPhase = Literal["headers", "body"]
_TIMEOUT_MESSAGE = b"request headers not received in time"
REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
    % (len(_TIMEOUT_MESSAGE), _TIMEOUT_MESSAGE)
)
"""Written raw when the header deadline passes (h11 sends a response only to a request)."""


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    keep_alive_timeout_s: float

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            max_connections=settings.max_connections,
            keep_alive_timeout_s=settings.keep_alive_timeout_s,
        )


class GuardedH11Protocol(H11Protocol):
    """uvicorn's ``H11Protocol`` with the limits of this module (one instance per
    connection)."""

    limits: ClassVar[ConnectionLimits | None] = None
    """None: ``ConnectionLimits.of(get_settings())``, the ``DDP_`` environment."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = self.limits or ConnectionLimits.of(get_settings())
        self.timeout_keep_alive = self._limits.keep_alive_timeout_s  # type: ignore[assignment]
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: ReadPhase | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            logger.info("closing a connection over the limit of %d", self._limits.max_connections)
            transport.close()
            return
        self._watch(got_data=False)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch(got_data=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch(got_data=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _waiting_for(self) -> ReadPhase | None:
        """What the connection is reading now: a request's headers (a new connection, or
        bytes of a next request buffered), its body, or nothing of ours (idle between
        requests: uvicorn's keep-alive timeout; or the request is read)."""
        state = self.conn.their_state
        if state is h11.IDLE:
            started = self.cycle is None or bool(self.conn.trailing_data[0])
            return "headers" if started else None
        return "body" if state is h11.SEND_BODY else None

    def _watch(self, *, got_data: bool) -> None:
        """Arm the timer of the phase the connection is in: once per request for the headers
        (a deadline), again on every piece of data for the body (an idle timeout)."""
        if self.transport.is_closing():
            return
        phase = self._waiting_for()
        if phase == self._armed_for and not (phase == "body" and got_data):
            return
        self._disarm()
        if phase is not None:
            self._arm(phase)

    def _arm(self, phase: ReadPhase) -> None:
        limits = self._limits
        timeout_s = limits.header_timeout_s if phase == "headers" else limits.body_timeout_s
        self._timer = self.loop.call_later(timeout_s, self._timed_out, phase)
        self._armed_for = phase

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_for = None, None

    def _timed_out(self, phase: ReadPhase) -> None:
        self._timer, self._armed_for = None, None
        if self.transport.is_closing():
            return
        if phase == "body" and self.flow.read_paused:  # the app is not reading: not the client
            self._arm(phase)
            return
        logger.info("closing a connection from %s: request %s not in time", self.client, phase)
        if phase == "headers":
            self.transport.write(REQUEST_TIMEOUT_RESPONSE)
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """``GuardedH11Protocol`` with ``limits`` (uvicorn's ``http`` option)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})
