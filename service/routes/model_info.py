"""What is served: config, weights name and checksum, device, sparse backend, batching
settings, and the limits of uploads and video jobs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fastapi import APIRouter

from service.batching import BatchingPolicy
from service.deps import ModelDep, StateDep
from service.loading import ModelInfo
from service.settings import Settings

router = APIRouter(tags=["model"])


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int
    max_image_pixels: int
    """Width × height, read from the image header before decoding."""
    max_image_side: int
    """A longer image is downscaled to this as it is decoded and answered at that size."""


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int
    max_seconds: float
    max_frames: int
    max_pixels: int
    max_running: int
    max_queued: int
    job_ttl_s: float
    raft_weights_configured: bool
    """Whether ``flow=raft`` is accepted (the service has RAFT weights)."""


@dataclass(frozen=True, kw_only=True)
class ServedModel(ModelInfo):
    """The answer of ``GET /v1/model``: the model's ``ModelInfo``, then how requests are batched
    and the limits."""

    batching: BatchingPolicy
    limits: UploadLimits
    video: VideoLimits

    @classmethod
    def of(cls, info: ModelInfo, policy: BatchingPolicy, settings: Settings) -> ServedModel:
        return cls(
            **{field.name: getattr(info, field.name) for field in dataclasses.fields(info)},
            batching=policy,
            limits=UploadLimits(
                max_upload_bytes=settings.max_upload_bytes,
                max_image_pixels=settings.max_image_pixels,
                max_image_side=settings.max_image_side,
            ),
            video=VideoLimits(
                max_bytes=settings.video_max_bytes,
                max_seconds=settings.video_max_seconds,
                max_frames=settings.video_max_frames,
                max_pixels=settings.video_max_pixels,
                max_running=settings.video_max_running,
                max_queued=settings.video_max_queued,
                job_ttl_s=settings.video_job_ttl_s,
                raft_weights_configured=settings.video_raft_weights is not None,
            ),
        )


@router.get(
    "/v1/model", summary="The served model, how requests are batched, and the upload limits"
)
async def model_info(model: ModelDep, state: StateDep) -> ServedModel:
    return ServedModel.of(model.info, model.policy, state.settings)
