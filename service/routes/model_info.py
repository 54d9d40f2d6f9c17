"""What is served: config, weights checksum, device, sparse backend, batching settings, and
the limits of uploads and video jobs."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter

from service.deps import ModelDep, StateDep

router = APIRouter(tags=["model"])


@router.get(
    "/v1/model", summary="The served model, how requests are batched, and the upload limits"
)
async def model_info(model: ModelDep, state: StateDep) -> dict[str, Any]:
    settings = state.settings
    return dataclasses.asdict(model.info) | {
        "batching": dataclasses.asdict(model.policy),
        "limits": {
            "max_upload_bytes": settings.max_upload_bytes,
            "max_image_pixels": settings.max_image_pixels,
        },
        "video": {
            "max_bytes": settings.video_max_bytes,
            "max_seconds": settings.video_max_seconds,
            "max_frames": settings.video_max_frames,
            "max_pixels": settings.video_max_pixels,
            "max_running": settings.video_max_running,
            "max_queued": settings.video_max_queued,
            "job_ttl_s": settings.video_job_ttl_s,
            "raft_weights_configured": settings.video_raft_weights is not None,
        },
    }
