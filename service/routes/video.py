"""``/densepose/video``: a clip becomes a background job (202); its status, its results (an
NPZ and two MP4s) and its cancellation or deletion."""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from model.temporal import FlowName
from model.video import VideoOptions
from service.deps import ModelDep, StateDep, VideoJobsDep
from service.errors import ServiceError, error_responses
from service.formats import FORMATS
from service.jobs.files import ResultKind
from service.jobs.records import JobRecord, JobState
from service.schemas import ScoreThreshold
from service.settings import Settings
from service.uploads import request_body
from service.video_jobs import VideoJobs
from service.video_uploads import RAW_MEDIA_TYPES, check_video, save_upload

router = APIRouter(tags=["video"])

_DEFAULTS = VideoOptions()
_STATUS_ROUTE = "video_job_status"
_RESULT_MEDIA_TYPES: dict[ResultKind, str] = {
    "npz": FORMATS["npz"].media_type,
    "parts_mp4": "video/mp4",
    "viridis_mp4": "video/mp4",
}


class VideoJobOptions(BaseModel):
    """Query options of ``POST /densepose/video``; unknown options are an error (422)."""

    model_config = ConfigDict(extra="forbid")

    smooth: bool = Field(
        default=_DEFAULTS.smooth,
        description="Temporal smoothing: each frame's logits averaged with its neighbours', "
        "warped along the optical flow (the paper's section 4).",
    )
    flow: FlowName = Field(
        default=_DEFAULTS.flow,
        description="Optical flow: OpenCV DIS, or torchvision RAFT (only where the service "
        "has RAFT weights, DDP_VIDEO_RAFT_WEIGHTS).",
    )
    radius: int = Field(
        default=_DEFAULTS.radius, ge=1, le=8, description="Smoothing window: frames each side."
    )
    score_threshold: ScoreThreshold = _DEFAULTS.score_threshold

    @classmethod
    def of(cls, options: VideoOptions) -> VideoJobOptions:
        return cls(
            smooth=options.smooth,
            flow=options.flow,
            radius=options.radius,
            score_threshold=options.score_threshold,
        )

    def to_video_options(self, settings: Settings, *, batch_size: int) -> VideoOptions:
        """Raises: ServiceError 422 ``invalid_request`` for RAFT without weights."""
        if self.flow == "raft" and settings.video_raft_weights is None:
            raise ServiceError(
                422,
                "invalid_request",
                "flow: 'raft' needs RAFT weights and this service has none "
                "(DDP_VIDEO_RAFT_WEIGHTS): use 'dis'",
            )
        return dataclasses.replace(
            _DEFAULTS,
            smooth=self.smooth,
            flow=self.flow,
            radius=self.radius,
            score_threshold=self.score_threshold,
            batch_size=batch_size,
            raft_weights=settings.video_raft_weights,
        )


class VideoJobAccepted(BaseModel):
    job_id: str
    status_url: str = Field(description="the job's status: a path on this service (relative URL)")


class ClipInfo(BaseModel):
    frames: int
    fps: float
    width: int
    height: int
    duration_s: float


class Progress(BaseModel):
    frames_done: int = Field(description="never decreases")
    frames_total: int


class JobTimings(BaseModel):
    queued_s: float = Field(description="from acceptance to start (so far, while queued)")
    running_s: float | None = Field(description="from start to finish (so far, while running)")
    stages: dict[str, float] = Field(description="seconds per pipeline stage, once done")


class JobErrorInfo(BaseModel):
    code: str
    message: str


class VideoResults(BaseModel):
    npz: str = Field(
        description="per-frame parts, U, V and instance maps; per-person track ids, boxes "
        "and scores (docs/outputs.md)"
    )
    parts_mp4: str = Field(description="H.264: part colours and U/V contours over the frames")
    viridis_mp4: str = Field(description="H.264: the part label map in the viridis colours")


class VideoJobStatus(BaseModel):
    job_id: str
    state: JobState
    cancel_requested: bool
    progress: Progress
    video: ClipInfo = Field(description="the uploaded clip, as probed")
    options: VideoJobOptions
    timings: JobTimings
    error: JobErrorInfo | None = Field(description="why it failed")
    results: VideoResults | None = Field(description="download links, once done")
    expires_in_s: float | None = Field(
        description="once finished: seconds until the job and its files are removed"
    )


def _job_path(request: Request, route_name: str, job_id: str) -> str:
    """The absolute path (the app's root path included) of a job's route: a relative URL, so
    that no header the client sends (``Host``, ``X-Forwarded-*``) can point it elsewhere."""
    return request.scope.get("root_path", "") + request.app.url_path_for(route_name, job_id=job_id)


def _status(job: JobRecord, request: Request) -> VideoJobStatus:
    now = time.time()
    end = job.finished_at if job.finished_at is not None else now
    started = job.started_at if job.started_at is not None else end
    results = None
    if job.state == "done":
        results = VideoResults(
            **{kind: _job_path(request, f"video_{kind}", job.id) for kind in _RESULT_MEDIA_TYPES}
        )
    video = job.video
    return VideoJobStatus(
        job_id=job.id,
        state=job.state,
        cancel_requested=job.cancel_requested,
        progress=Progress(frames_done=job.frames_done, frames_total=job.frames_total),
        video=ClipInfo(
            frames=video.frames,
            fps=video.fps,
            width=video.width,
            height=video.height,
            duration_s=video.duration_s,
        ),
        options=VideoJobOptions.of(job.options),
        timings=JobTimings(
            queued_s=started - job.created_at,
            running_s=None if job.started_at is None else end - job.started_at,
            stages=dict(job.stages),
        ),
        error=None if job.error is None else JobErrorInfo(**dataclasses.asdict(job.error)),
        results=results,
        expires_in_s=None if job.expires_at is None else max(0.0, job.expires_at - now),
    )


_JOB_ERRORS = error_responses(
    {
        404: "no such job (never created, deleted or expired)",
        422: "a malformed request",
    }
)


@router.post(
    "/densepose/video",
    summary="Start a dense pose job on a video clip (MP4, MOV, WebM or AVI)",
    status_code=202,
    responses={
        202: {
            "description": "accepted; the Location header is the status URL",
            "headers": {
                "Location": {
                    "description": "the job's status: a path on this service (relative URL)",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        },
        **error_responses(
            {
                400: "empty upload, malformed multipart or no 'file' part",
                413: "over the byte, pixel, frame or duration limit",
                415: "not multipart or a video content type, or not a video",
                422: "invalid options, or an unreadable, truncated or empty video",
                429: "as many jobs running and waiting as allowed (Retry-After)",
                503: "not ready, or shutting down",
            },
            retry_after=(429,),
        ),
    },
    openapi_extra={"requestBody": request_body(RAW_MEDIA_TYPES)},
)
async def submit_video_job(
    request: Request,
    response: Response,
    options: Annotated[VideoJobOptions, Query()],
    state: StateDep,
    model: ModelDep,
    jobs: VideoJobsDep,
) -> VideoJobAccepted:
    settings = state.settings
    video_options = options.to_video_options(settings, batch_size=model.policy.max_batch_size)
    async with jobs.staging() as directory:
        upload = directory / "upload"
        await save_upload(request, upload, max_bytes=settings.video_max_bytes)
        source, video = await state.run_cpu(
            check_video,
            upload,
            max_seconds=settings.video_max_seconds,
            max_frames=settings.video_max_frames,
            max_pixels=settings.video_max_pixels,
        )
        job = await jobs.submit(directory, source, video, video_options)
    status_url = _job_path(request, _STATUS_ROUTE, job.id)
    response.headers["Location"] = status_url
    return VideoJobAccepted(job_id=job.id, status_url=status_url)


@router.get(
    "/densepose/video/{job_id}",
    name=_STATUS_ROUTE,
    summary="A video job's state, progress, timings, error and result links",
    responses=_JOB_ERRORS,
)
async def video_job_status(job_id: str, request: Request, jobs: VideoJobsDep) -> VideoJobStatus:
    return _status(await jobs.get(job_id), request)


@router.delete(
    "/densepose/video/{job_id}",
    summary="Cancel a queued or running job, or delete a finished one and its files",
    status_code=204,
    response_class=Response,
    responses={
        202: {
            "model": VideoJobStatus,
            "description": "cancelled (queued) or asked to stop (running: it stops before its "
            "next batch of frames); the job stays, as cancelled, until it expires",
        },
        204: {"description": "the finished job and its files are removed"},
        **_JOB_ERRORS,
    },
)
async def delete_video_job(job_id: str, request: Request, jobs: VideoJobsDep) -> Response:
    job = await jobs.cancel_or_delete(job_id)
    if job is None:
        return Response(status_code=204)
    return JSONResponse(_status(job, request).model_dump(mode="json"), status_code=202)


async def _result_file(jobs: VideoJobs, job_id: str, kind: ResultKind) -> FileResponse:
    job = await jobs.get(job_id)
    if job.state != "done":
        raise ServiceError(
            409, "job_not_done", f"job {job_id} is {job.state}: results exist once it is done"
        )
    path = jobs.result(job, kind)
    filename = f"{job_id}.{path.name.removeprefix('result.')}"  # <id>.npz, <id>.parts.mp4, ...
    return FileResponse(path, media_type=_RESULT_MEDIA_TYPES[kind], filename=filename)


_RESULT_RESPONSES = {
    **error_responses({409: "the job is not done (queued, running, failed or cancelled)"}),
    **_JOB_ERRORS,
}


@router.get(
    "/densepose/video/{job_id}/result.npz",
    name="video_npz",
    summary="Per-frame dense pose of a done job (compressed NPZ)",
    response_class=FileResponse,
    responses={200: {"content": {_RESULT_MEDIA_TYPES["npz"]: {}}}, **_RESULT_RESPONSES},
)
async def video_npz(job_id: str, jobs: VideoJobsDep) -> FileResponse:
    return await _result_file(jobs, job_id, "npz")


@router.get(
    "/densepose/video/{job_id}/parts.mp4",
    name="video_parts_mp4",
    summary="Overlay video of a done job: part colours and U/V contours over the frames",
    response_class=FileResponse,
    responses={200: {"content": {_RESULT_MEDIA_TYPES["parts_mp4"]: {}}}, **_RESULT_RESPONSES},
)
async def video_parts_mp4(job_id: str, jobs: VideoJobsDep) -> FileResponse:
    return await _result_file(jobs, job_id, "parts_mp4")


@router.get(
    "/densepose/video/{job_id}/viridis.mp4",
    name="video_viridis_mp4",
    summary="Part label map of a done job in the viridis colours (MP4)",
    response_class=FileResponse,
    responses={200: {"content": {_RESULT_MEDIA_TYPES["viridis_mp4"]: {}}}, **_RESULT_RESPONSES},
)
async def video_viridis_mp4(job_id: str, jobs: VideoJobsDep) -> FileResponse:
    return await _result_file(jobs, job_id, "viridis_mp4")
