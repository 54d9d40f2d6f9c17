"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from service.deps import StateDep
from service.errors import RETRY_AFTER_HEADER, ServiceError
from service.state import Status

router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    status: Literal["alive", "failed"]
    detail: str | None = Field(default=None, description="why loading the model failed")


class Readiness(BaseModel):
    ready: bool
    status: Status = Field(description="the model's lifecycle: ready once loaded and warmed up")
    model_id: str | None = Field(default=None, description="once ready: the served model")
    detail: str | None = Field(default=None, description="why loading the model failed")


@router.get(
    "/healthz",
    summary="Liveness: the process serves HTTP and its model did not fail",
    responses={500: {"model": Liveness, "description": "loading the model failed"}},
)
async def healthz(state: StateDep, response: Response) -> Liveness:
    if state.status == "failed":
        response.status_code = 500
        return Liveness(status="failed", detail=state.failure)
    return Liveness(status="alive")


@router.get(
    "/readyz",
    summary="Readiness: weights loaded and a warm-up forward pass done",
    responses={
        503: {
            "model": Readiness,
            "description": "not ready yet (Retry-After)",
            "headers": RETRY_AFTER_HEADER,
        }
    },
)
async def readyz(state: StateDep, response: Response) -> Readiness:
    try:
        model = state.model
    except ServiceError as not_ready:  # its status and Retry-After, as every route answers them
        response.status_code = not_ready.status
        response.headers.update(not_ready.headers)
        return Readiness(ready=False, status=state.status, detail=state.failure)
    return Readiness(ready=True, status=state.status, model_id=model.info.model_id)
