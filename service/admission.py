"""The cheapest possible refusal: a pure-ASGI gate in front of the app that answers
``POST /densepose`` with 503 + Retry-After while the batcher's queue is full, before FastAPI
routes the request, validates its query or reads a byte of its body.

A refusal the route itself gives costs the routing, the dependencies, the query model and the
exception machinery: measured 0.57 ms of CPU per 503 at the ASGI level, 10-20 x the gate's
(``docs/benchmarks/overload.md``). Under a retry storm those refusals compete with the model
for the CPU, so their cost is taken from the requests being served. The route keeps its own
admission (``Batcher.reserve``) for the requests the gate lets through: the queue can fill
between the two checks.

A fast refusal is still not free (parsing the request, the ASGI call, the answer: a few hundred
microseconds of the event loop), and clients that ignore ``Retry-After`` resend as fast as they
are refused: measured, 64 such clients on loopback drew ~3,000 refusals a second and left the
model a quarter of its rate. So at most ``refusals_per_s`` refusals a second are answered at
once (``RefusalPacer``, a token bucket holding one second's worth); a refusal beyond waits,
costing nothing while it waits, until its turn, and is let through instead if the queue has
room by then. A retry storm then costs the CPU of that many refusals a second, whatever the
number of clients; a client that waits out ``Retry-After`` gets its answer at once as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from service.batching import Batcher, Rejected
from service.errors import ServiceError, rejection_response
from service.middleware import ENDPOINT_STATE_KEY
from service.state import ServiceState

GATED_ROUTES = (("POST", "/densepose"),)
"""(method, path) of the routes whose requests wait in the batcher's queue."""


class RefusalPacer:
    """A token bucket for refusals (GCRA): ``rate_per_s`` a second, up to one second's worth
    at once. ``delay_s`` takes the next token and says how long to wait for it (0: now);
    tokens are handed out in the order asked, so the waits queue up fairly."""

    def __init__(self, rate_per_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        self._interval_s = 1.0 / rate_per_s
        self._burst_s = 1.0 - self._interval_s  # a second's worth of tokens, the first free
        self._clock = clock
        self._next_s = -float("inf")
        """When the bucket would be empty again had nobody been refused since (the GCRA's
        theoretical arrival time)."""

    def delay_s(self) -> float:
        now = self._clock()
        due = max(self._next_s, now)
        self._next_s = due + self._interval_s
        return max(0.0, due - self._burst_s - now)


class QueueFullGate:
    """503 for a gated route while the queue is full (or the service is shutting down), at
    once while refusals stay within ``refusals_per_s`` (0: no limit), else after a wait for
    a turn (and let through if the queue has room by then); every other request goes to
    ``app`` untouched."""

    def __init__(self, app: ASGIApp, *, state: ServiceState) -> None:
        self.app = app
        self.state = state
        self._gated = set(GATED_ROUTES)
        rate = state.settings.refusals_per_s
        self._pacer = RefusalPacer(rate) if rate > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) in self._gated:
            refusal = await self._paced_refusal()
            if refusal is not None:
                scope.setdefault("state", {})[ENDPOINT_STATE_KEY] = scope["path"]
                await rejection_response(refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _paced_refusal(self) -> Rejected | None:
        """The refusal to answer, after this refusal's turn came; None: admitted so far."""
        batcher = self._batcher()
        if batcher is None or not batcher.full():
            return None
        if self._pacer is not None and (delay_s := self._pacer.delay_s()) > 0:
            await asyncio.sleep(delay_s)
        try:
            batcher.refuse_if_full()
        except Rejected as refusal:
            return refusal
        return None

    def _batcher(self) -> Batcher[Any, Any] | None:
        """None while the model is not loaded (the route then gives its own 503
        ``not_ready``)."""
        try:
            return self.state.model.batcher
        except ServiceError:
            return None
