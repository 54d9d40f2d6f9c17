"""Video jobs: accepted clips wait in a bounded queue; at most ``video_max_running`` are
processed at once, each in its own thread, with every model call sent to the service's model
thread. Each job's files live in one directory under the app's jobs directory: the upload is
removed once the job is done, everything once it fails, is cancelled or expires (a sweeper
task), and the whole jobs directory when the app stops. A job runs independently of the
request that created it."""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from model.inference.predictor import Predictor
from model.video import VideoCancelled, VideoError, VideoInfo, VideoOptions, VideoOutputs
from model.video.pipeline import ModelRunner, process_video
from service.errors import ServiceError
from service.metrics import ServiceMetrics
from service.settings import Settings

logger = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
RETRY_AFTER_S = 5
"""Retry-After of a refused upload while no running job has a pace to extrapolate."""
MAX_SWEEP_INTERVAL_S = 30.0


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(eq=False)
class VideoJob:
    """One clip's job. ``frames_done``/``frames_total`` are written by the job's thread; the
    rest only on the event loop. Times are ``time.monotonic()``."""

    id: str
    directory: Path
    source: Path
    video: VideoInfo
    """The upload, as probed."""
    options: VideoOptions
    predictor: Predictor
    run_model: ModelRunner
    created_at: float
    state: JobState = "queued"
    frames_done: int = 0
    frames_total: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    outputs: VideoOutputs | None = None
    error: JobError | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    too_many_frames: bool = False
    """Set (with ``cancel``) when more frames decode than the limit allows."""


class VideoJobs:
    """The jobs of one app; ``start`` and ``stop`` in its lifespan."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._jobs: dict[str, VideoJob] = {}
        self._queue: deque[VideoJob] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._root: Path | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False
        metrics.track_video_jobs(running=self.running, queued=self.queued)

    def running(self) -> int:
        return sum(job.state == "running" for job in self._jobs.values())

    def queued(self) -> int:
        return len(self._queue)

    @property
    def root(self) -> Path:
        """This app's jobs directory (one subdirectory per job)."""
        assert self._root is not None, "VideoJobs used before start()"
        return self._root

    async def start(self) -> None:
        parent = self._settings.video_jobs_root
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self._root = Path(tempfile.mkdtemp(prefix="ddp-video-", dir=parent))
        self._threads = ThreadPoolExecutor(
            self._settings.video_max_running, thread_name_prefix="ddp-video"
        )
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="ddp-video-sweeper")

    async def stop(self, *, drain_timeout_s: float) -> None:
        """Cancel every job, give running ones up to the timeout to notice, remove all files."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        while self._queue:
            self._finish(self._queue.popleft(), "cancelled")
        for job in self._jobs.values():
            job.cancel.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=drain_timeout_s)
            for task in late:
                logger.warning("shutdown: a video job did not stop in time")
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        if self._root is not None:
            await asyncio.to_thread(shutil.rmtree, self._root, ignore_errors=True)

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A new, empty job directory to receive an upload, refused at once when no job could
        be accepted; removed on any error (``submit`` takes it over).

        Raises:
            ServiceError: 429 ``too_many_jobs``, 503 ``shutting_down``.
        """
        self._check_accepting()
        directory = self.root / uuid.uuid4().hex
        directory.mkdir()
        try:
            yield directory
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def submit(
        self,
        directory: Path,
        source: Path,
        video: VideoInfo,
        options: VideoOptions,
        *,
        predictor: Predictor,
        run_model: ModelRunner,
    ) -> VideoJob:
        """Queue a job on the clip ``source`` in the staged ``directory``; it starts as soon
        as a slot is free.

        Raises:
            ServiceError: 429 ``too_many_jobs``, 503 ``shutting_down``.
        """
        self._check_accepting()
        job = VideoJob(
            id=directory.name,
            directory=directory,
            source=source,
            video=video,
            options=options,
            predictor=predictor,
            run_model=run_model,
            created_at=time.monotonic(),
            frames_total=video.frames,
        )
        self._jobs[job.id] = job
        self._queue.append(job)
        self._metrics.video_jobs.labels(state="queued").inc()
        self._start_queued()
        return job

    def get(self, job_id: str) -> VideoJob:
        """Raises: ServiceError 404 ``job_not_found`` (never existed, deleted or expired)."""
        job = self._jobs.get(job_id)
        if job is None:
            raise ServiceError(
                404, "job_not_found", f"no video job {job_id!r} (never created, deleted or expired)"
            )
        return job

    async def cancel_or_delete(self, job_id: str) -> VideoJob | None:
        """A queued job is cancelled now and a running one asked to stop (it does so before its
        next batch of frames): the job is returned. A finished job is removed with its
        files: None.

        Raises:
            ServiceError: 404 ``job_not_found``.
        """
        job = self.get(job_id)
        if job.state == "queued":
            self._queue.remove(job)
            self._finish(job, "cancelled")
            await _remove(job.directory)
            return job
        if job.state == "running":
            job.cancel.set()
            return job
        del self._jobs[job.id]
        await _remove(job.directory)
        return None

    async def expire(self) -> None:
        """Remove the finished jobs whose time to live has passed, with their files."""
        now = time.monotonic()
        expired = [
            job
            for job in self._jobs.values()
            if job.expires_at is not None and job.expires_at <= now
        ]
        for job in expired:
            del self._jobs[job.id]
        for job in expired:
            await _remove(job.directory)

    def _check_accepting(self) -> None:
        if self._closing:
            raise ServiceError(503, "shutting_down", "the service is shutting down")
        settings = self._settings
        if self.running() + self.queued() >= settings.video_max_running + settings.video_max_queued:
            self._metrics.rejections.labels(reason="too_many_jobs").inc()
            raise ServiceError(
                429,
                "too_many_jobs",
                f"{settings.video_max_running} video jobs are running and "
                f"{settings.video_max_queued} waiting: retry later",
                headers={"Retry-After": str(self._retry_after_s())},
            )

    def _retry_after_s(self) -> int:
        """When the first running job should be done, at its pace so far."""
        now = time.monotonic()
        remaining = [
            (now - job.started_at) * (job.frames_total - job.frames_done) / job.frames_done
            for job in self._jobs.values()
            if job.state == "running" and job.started_at is not None and job.frames_done > 0
        ]
        return max(1, math.ceil(min(remaining, default=RETRY_AFTER_S)))

    def _start_queued(self) -> None:
        while self._queue and self.running() < self._settings.video_max_running:
            job = self._queue.popleft()
            job.state, job.started_at = "running", time.monotonic()
            self._metrics.video_jobs.labels(state="running").inc()
            task = asyncio.create_task(self._run(job), name=f"ddp-video-{job.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, job: VideoJob) -> None:
        loop = asyncio.get_running_loop()
        outputs: VideoOutputs | None = None
        error: JobError | None = None
        try:
            outputs = await loop.run_in_executor(self._threads, self._process, job)
        except VideoCancelled:
            pass
        except VideoError as invalid:
            error = JobError("invalid_video", str(invalid).removeprefix(f"{job.source.name}: "))
        except Exception as bug:
            logger.exception("video job %s failed", job.id)
            message = f"internal error ({type(bug).__name__}); see the service log"
            error = JobError("internal_error", message)
        if job.too_many_frames:
            limit = self._settings.video_max_frames
            message = f"more frames decode than the limit of {limit} (the file declares fewer)"
            error = JobError("too_many_frames", message)
        if error is not None:
            self._finish(job, "failed", error)
        elif outputs is None or job.cancel.is_set():  # also when asked after its last batch
            self._finish(job, "cancelled")
        else:
            job.outputs = outputs
            job.frames_done = job.frames_total = outputs.frames
            self._finish(job, "done")
            self._observe(outputs)
        if job.state == "done":
            await asyncio.to_thread(job.source.unlink, missing_ok=True)
        else:
            await _remove(job.directory)
        if not self._closing:
            self._start_queued()

    def _process(self, job: VideoJob) -> VideoOutputs:
        """In the job's thread."""

        def progress(done: int, total: int) -> None:
            if done > job.frames_done:
                self._metrics.video_frames.inc(done - job.frames_done)
                job.frames_done = done
            job.frames_total = total
            if done > self._settings.video_max_frames:  # the container's count was wrong
                job.too_many_frames = True
                job.cancel.set()

        return process_video(
            job.source,
            job.directory / "out",
            job.predictor,
            job.options,
            progress=progress,
            cancelled=job.cancel.is_set,
            run_model=job.run_model,
        )

    def _finish(self, job: VideoJob, state: JobState, error: JobError | None = None) -> None:
        job.state, job.error = state, error
        job.finished_at = time.monotonic()
        job.expires_at = job.finished_at + self._settings.video_job_ttl_s
        self._metrics.video_jobs.labels(state=state).inc()

    def _observe(self, outputs: VideoOutputs) -> None:
        for stage, seconds in outputs.seconds.items():
            self._metrics.video_seconds.labels(stage=stage).observe(seconds)

    async def _sweep_forever(self) -> None:
        interval = min(self._settings.video_job_ttl_s / 2, MAX_SWEEP_INTERVAL_S)
        while True:
            await asyncio.sleep(interval)
            await self.expire()


async def _remove(directory: Path) -> None:
    await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)
