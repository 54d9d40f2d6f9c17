"""Pure-ASGI middleware timing every HTTP request into ``ServiceMetrics``.

The endpoint label is the matched route's path template (``other`` when none matched); the
persons label is what the endpoint stored in ``request.state.persons`` (``none`` otherwise). A
middleware that answers before routing (the queue-full gate) names the endpoint in
``scope["state"]["endpoint"]`` instead.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import NO_PERSONS_LABEL, ServiceMetrics, person_bucket

PERSONS_STATE_KEY = "persons"
ENDPOINT_STATE_KEY = "endpoint"


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        status = 500
        scope.setdefault("state", {})

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            endpoint = scope["state"].get(ENDPOINT_STATE_KEY) or getattr(route, "path", "other")
            persons = scope["state"].get(PERSONS_STATE_KEY)
            label = NO_PERSONS_LABEL if persons is None else person_bucket(persons)
            self.metrics.request_latency.labels(endpoint=endpoint, persons=label).observe(
                time.monotonic() - start
            )
            self.metrics.requests.labels(endpoint=endpoint, status=f"{status // 100}xx").inc()
