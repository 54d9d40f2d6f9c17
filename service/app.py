"""The app factory: ``create_app(settings)``; ``uvicorn --factory service.app:create_app``
reads the settings from the environment. Its API documentation (``/docs``, ``/redoc``) is
served from the assets of an installed package (``fastapi-offline``), never from a CDN."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from service.admission import QueueFullGate
from service.errors import install_error_handlers
from service.metrics import ServiceMetrics
from service.middleware import RequestMetricsMiddleware
from service.routes import densepose, health, metrics, model_info, video
from service.settings import Settings, get_settings
from service.state import ServiceState
from service.video_jobs import VideoJobs


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app with its own metrics registry; the model loads when the app starts."""
    state = ServiceState(settings or get_settings(), ServiceMetrics())
    video_jobs = VideoJobs(state)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.start()
        await video_jobs.start()
        try:
            yield
        finally:
            await video_jobs.stop(drain_timeout_s=state.settings.drain_timeout_s)
            await state.stop()

    app = FastAPIOffline(
        title="DDP dense pose service",
        summary="Direct Dense Pose: I, U, V and an instance mask per person, batched.",
        version="0.1.0",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.service = state
    app.openapi = openapi_as_served(app, state.settings)  # type: ignore[method-assign]
    app.state.video_jobs = video_jobs
    install_error_handlers(app)
    for module in (densepose, video, health, model_info, metrics):
        app.include_router(module.router)
    # add_middleware wraps what is there: the gate runs inside the metrics, so a refusal at
    # the gate is counted and timed like any other answer.
    app.add_middleware(QueueFullGate, state=state)
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics)
    return app


def openapi_as_served(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """``app.openapi``, narrowed to what this service accepts: a request its spec allows must
    not be refused. Without RAFT weights the video route's ``flow`` option is ``dis`` only."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()  # cached in app.openapi_schema: narrowed once, in place
        if settings.video_raft_weights is None:
            for parameter in schema["paths"]["/densepose/video"]["post"]["parameters"]:
                if parameter["name"] == "flow":
                    parameter["schema"]["enum"] = ["dis"]
        return schema

    return openapi


def operation_id(route: APIRoute) -> str:
    """The OpenAPI operation id of a route: its name in camelCase (``submit_video_job`` ->
    ``submitVideoJob``), which generated clients turn into their function names."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)
