"""Video jobs as the API sees them: an accepted clip becomes a job record in the job store and
a message on the queue (``service.jobs``), and any API replica answers for any job. The
uploads and results live in the shared results directory (``service.jobs.files``): an upload
is staged in a new job directory, which is removed on any error before the job exists.

Workers run the jobs: ``ddp worker`` processes, and (``video_worker``, the default) threads of
this process whose model calls go to the service's model thread. Each API process also runs
the sweeper (``service.jobs.sweeper``): expiry, and jobs whose worker died queued again.

The jobs outlive the process: at shutdown its running jobs go back to the queue, and after a
restart every job id answers as before."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from model.video import VideoInfo, VideoOptions
from service.errors import ServiceError
from service.jobs.backend import JobBackend, open_backend
from service.jobs.files import ResultKind
from service.jobs.records import JobRecord, new_job, stop_asked
from service.jobs.sweeper import sweep
from service.jobs.worker import JobLimits, VideoWorker, WorkerModel
from service.state import ServiceState

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5
"""Retry-After of a refused upload while no running job has a pace to extrapolate."""
MAX_SWEEP_INTERVAL_S = 30.0


class VideoJobs:
    """The video jobs seen from one app; ``start`` and ``stop`` in its lifespan."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state
        self._settings = state.settings
        self._metrics = state.metrics
        self._backend: JobBackend | None = None
        self._worker: VideoWorker | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False
        state.metrics.track_video_jobs(
            running=lambda: self._count("running"), queued=lambda: self._count("queued")
        )

    @property
    def backend(self) -> JobBackend:
        assert self._backend is not None, "VideoJobs used before start()"
        return self._backend

    @property
    def root(self) -> Path:
        """The job directories (one per job)."""
        return self.backend.files.root

    async def start(self) -> None:
        """Open the job store and start the worker and the sweeper; again after ``stop``
        (an app's lifespan may run more than once: tests, embedding servers)."""
        self._closing = False
        self._backend = await asyncio.to_thread(open_backend, self._settings)
        if self._settings.video_worker:
            self._worker = VideoWorker(
                self._backend,
                JobLimits.of(self._settings),
                threads=self._settings.video_max_running,
                model=self._model,
                metrics=self._metrics,
            )
            self._worker.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="ddp-video-sweeper")

    async def stop(self, *, drain_timeout_s: float) -> None:
        """Refuse new jobs; this process's running jobs go back to the queue (their workers
        stop before their next batch, within ``drain_timeout_s``). Every file stays."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self._worker is not None:
            await asyncio.to_thread(self._worker.stop, timeout_s=drain_timeout_s)
        if self._backend is not None:
            backend, self._backend = self._backend, None  # the gauges read 0 from now on
            await asyncio.to_thread(backend.close)

    def _model(self) -> WorkerModel | None:
        """The service's model for the in-process worker, once it is ready."""
        if self._state.status != "ready":
            return None
        model = self._state.model
        return WorkerModel(model.predictor, model.batcher.run_in_model_thread)

    def _count(self, state: str) -> int:
        if self._backend is None:
            return 0
        return sum(record.state == state for record in self._backend.store.records(active=True))

    @asynccontextmanager
    async def staging(self) -> AsyncIterator[Path]:
        """A new, empty job directory to receive an upload, refused at once when no job could
        be accepted; removed on any error (``submit`` takes it over).

        Raises:
            ServiceError: 429 ``too_many_jobs``, 503 ``shutting_down``.
        """
        self._check_open()
        active = await asyncio.to_thread(self.backend.store.records, active=True)
        if len(active) >= self._max_active():
            raise self._too_many_jobs(active)
        with self.backend.files.staging() as directory:
            yield directory

    async def submit(
        self, directory: Path, source: Path, video: VideoInfo, options: VideoOptions
    ) -> JobRecord:
        """Record a job on the clip ``source`` in the staged ``directory`` and queue it.

        Raises:
            ServiceError: 429 ``too_many_jobs``, 503 ``shutting_down``.
        """
        self._check_open()
        record = new_job(directory.name, source.name, video, options, now=time.time())
        store = self.backend.store
        if not await asyncio.to_thread(store.create, record, max_active=self._max_active()):
            raise self._too_many_jobs(await asyncio.to_thread(store.records, active=True))
        await asyncio.to_thread(self.backend.queue.put, record.id)
        self._metrics.video_jobs.labels(state="queued").inc()
        return record

    async def get(self, job_id: str) -> JobRecord:
        """Raises: ServiceError 404 ``job_not_found`` (never existed, deleted or expired)."""
        record = await asyncio.to_thread(self.backend.store.get, job_id)
        if record is None:
            raise ServiceError(
                404, "job_not_found", f"no video job {job_id!r} (never created, deleted or expired)"
            )
        return record

    async def cancel_or_delete(self, job_id: str) -> JobRecord | None:
        """A queued job is cancelled now and a running one asked to stop (it does so before its
        next batch of frames): the job is returned. A finished job is removed with its
        files: None.

        Raises:
            ServiceError: 404 ``job_not_found``.
        """
        backend, ttl_s = self.backend, self._settings.video_job_ttl_s
        changed = await asyncio.to_thread(
            backend.store.update, job_id, lambda r: stop_asked(r, now=time.time(), ttl_s=ttl_s)
        )
        if changed is not None:
            if changed.state == "cancelled":
                self._metrics.video_jobs.labels(state="cancelled").inc()
                await asyncio.to_thread(backend.files.remove, job_id)
            return changed
        record = await self.get(job_id)
        if record.active:  # running, its stop asked already
            return record
        await asyncio.to_thread(backend.store.delete, job_id)
        await asyncio.to_thread(backend.files.remove, job_id)
        return None

    def result(self, record: JobRecord, kind: ResultKind) -> Path:
        return self.backend.files.result(record.id, kind)

    def _max_active(self) -> int:
        return self._settings.video_max_running + self._settings.video_max_queued

    def _check_open(self) -> None:
        if self._closing:
            raise ServiceError(503, "shutting_down", "the service is shutting down")

    def _too_many_jobs(self, active: list[JobRecord]) -> ServiceError:
        settings = self._settings
        self._metrics.rejections.labels(reason="too_many_jobs").inc()
        return ServiceError(
            429,
            "too_many_jobs",
            f"{settings.video_max_running} video jobs are running and "
            f"{settings.video_max_queued} waiting: retry later",
            headers={"Retry-After": str(_retry_after_s(active))},
        )

    async def _sweep_forever(self) -> None:
        settings = self._settings
        interval = min(
            settings.video_job_ttl_s / 2, settings.video_job_lease_s / 2, MAX_SWEEP_INTERVAL_S
        )
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(sweep, self.backend, lease_s=settings.video_job_lease_s)
            except Exception:  # the store unreachable: try again next time
                logger.exception("sweeping the video jobs failed")


def _retry_after_s(active: list[JobRecord]) -> int:
    """When the first running job should be done, at its pace so far."""
    now = time.time()
    remaining = [
        (now - job.started_at) * (job.frames_total - job.frames_done) / job.frames_done
        for job in active
        if job.state == "running" and job.started_at is not None and job.frames_done > 0
    ]
    return max(1, math.ceil(min(remaining, default=RETRY_AFTER_S)))
