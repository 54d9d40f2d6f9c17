"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process serves HTTP and its model did not fail")
async def healthz(state: StateDep) -> JSONResponse:
    if state.status == "failed":
        return JSONResponse({"status": "failed", "detail": state.failure}, status_code=500)
    return JSONResponse({"status": "alive"})


@router.get("/readyz", summary="Readiness: weights loaded and a warm-up forward pass done")
async def readyz(state: StateDep) -> JSONResponse:
    if state.status != "ready":
        detail = {"ready": False, "status": state.status, "detail": state.failure}
        return JSONResponse(detail, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"ready": True, "model_id": state.model.info.model_id})
