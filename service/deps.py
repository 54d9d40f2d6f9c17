"""Dependencies of the routes, as ``Annotated`` aliases. Each is ``async``: FastAPI runs a plain
``def`` dependency in a worker thread, a hop that cost each request (a queue-full 503 too)
milliseconds when the model's threads kept the CPUs busy."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.state import LoadedModel, ServiceState
from service.video_jobs import VideoJobs


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


async def get_model(state: Annotated[ServiceState, Depends(get_state)]) -> LoadedModel:
    return state.model


async def get_video_jobs(request: Request) -> VideoJobs:
    jobs: VideoJobs = request.app.state.video_jobs
    return jobs


StateDep = Annotated[ServiceState, Depends(get_state)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
VideoJobsDep = Annotated[VideoJobs, Depends(get_video_jobs)]
