"""The cheapest possible refusal: a pure-ASGI gate in front of the app that answers
``POST /densepose`` with 503 + Retry-After while the batcher's queue is full, before FastAPI
routes the request, validates its query or reads a byte of its body.

A refusal the route itself gives costs the routing, the dependencies, the query model and the
exception machinery: measured 0.57 ms of CPU per 503 at the ASGI level, 10-20 x the gate's
(``docs/benchmarks/overload.md``). Under a retry storm those refusals compete with the model
for the CPU, so their cost is taken from the requests being served. The route keeps its own
admission (``Batcher.reserve``) for the requests the gate lets through: the queue can fill
between the two checks.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from service.batching import Rejected
from service.errors import ServiceError, rejection_response
from service.middleware import ENDPOINT_STATE_KEY
from service.state import ServiceState

GATED_ROUTES = (("POST", "/densepose"),)
"""(method, path) of the routes whose requests wait in the batcher's queue."""


class QueueFullGate:
    """503 at once for a gated route while the queue is full (or the service is shutting
    down); every other request goes to ``app`` untouched."""

    def __init__(self, app: ASGIApp, *, state: ServiceState) -> None:
        self.app = app
        self.state = state
        self._gated = set(GATED_ROUTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) in self._gated:
            refusal = self._refusal()
            if refusal is not None:
                scope.setdefault("state", {})[ENDPOINT_STATE_KEY] = scope["path"]
                await rejection_response(refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self) -> Rejected | None:
        """What the batcher would answer now, or None (admitted so far; also when the model is
        not loaded yet: the route then gives its own 503 ``not_ready``)."""
        try:
            batcher = self.state.model.batcher
        except ServiceError:
            return None
        try:
            batcher.refuse_if_full()
        except Rejected as refusal:
            return refusal
        return None
