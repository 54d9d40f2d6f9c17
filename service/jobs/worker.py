"""Workers: threads that take job ids off the queue, claim each job's record (only one attempt
holds a job), run ``process_video`` into the attempt's own folder, rename the finished outputs
into place and only then mark the job done.

While an attempt runs, a heartbeat thread renews its lease (every third of ``lease_s``); a
worker killed with SIGKILL stops renewing, the sweeper queues the job again once the lease
ran out, and another worker (or this one restarted) runs it from the start. A worker told to
stop (``stop``: shutdown) hands its running jobs back to the queue before its next batch.

The same class runs in ``ddp worker`` (its own model) and in ``ddp serve``'s process, where
every model call goes to the service's model thread."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from model.inference.predictor import Predictor
from model.video import VideoCancelled, VideoError, VideoOutputs
from model.video.pipeline import ModelRunner, process_video
from service.jobs.backend import JobBackend
from service.jobs.records import (
    JobError,
    JobRecord,
    JobState,
    claimed,
    finished,
    progressed,
    released,
    renewed,
)
from service.metrics import ServiceMetrics
from service.settings import Settings

logger = logging.getLogger(__name__)

POLL_S = 0.2
"""How often an idle worker looks at a queue that cannot block (SQLite), or for its model."""


@dataclass(frozen=True)
class WorkerModel:
    """What a worker runs jobs with: the predictor, and how its model calls run (None: in the
    job's thread)."""

    predictor: Predictor
    run_model: ModelRunner | None = None


@dataclass(frozen=True)
class JobLimits:
    lease_s: float
    ttl_s: float
    max_frames: int
    """A job decoding more frames than this (its container declared fewer) fails."""

    @classmethod
    def of(cls, settings: Settings) -> JobLimits:
        return cls(
            lease_s=settings.video_job_lease_s,
            ttl_s=settings.video_job_ttl_s,
            max_frames=settings.video_max_frames,
        )


class VideoWorker:
    """``threads`` jobs at once; ``model()`` is None until the model is ready (jobs wait)."""

    def __init__(
        self,
        backend: JobBackend,
        limits: JobLimits,
        *,
        threads: int,
        model: Callable[[], WorkerModel | None],
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._backend = backend
        self._limits = limits
        self._model = model
        self._metrics = metrics
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, name=f"ddp-video-{index}", daemon=True)
            for index in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, *, timeout_s: float) -> None:
        """Stop taking jobs; running ones go back to the queue (blocks up to ``timeout_s``)."""
        self._stopping.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("shutdown: video worker %s did not stop in time", thread.name)

    def _loop(self) -> None:
        queue = self._backend.queue
        while not self._stopping.is_set():
            model = self._model()
            if model is None:
                self._stopping.wait(POLL_S)
                continue
            try:
                job_id = queue.take()
                if job_id is not None:
                    self.run(job_id, model)
                elif not queue.blocks:
                    self._stopping.wait(POLL_S)
            except Exception:  # the store or queue unreachable: the lease lapses, and then
                logger.exception("video worker: reading the queue or running a job failed")
                self._stopping.wait(POLL_S)

    def run(self, job_id: str, model: WorkerModel) -> None:
        """Run the job ``job_id`` unless it is not queued any more (a duplicate message, a
        cancelled job, one another worker holds)."""
        owner = uuid.uuid4().hex
        limits = self._limits
        store = self._backend.store
        record = store.update(
            job_id, lambda r: claimed(r, owner, now=time.time(), lease_s=limits.lease_s)
        )
        if record is None:
            return
        if self._metrics is not None:
            self._metrics.video_jobs.labels(state="running").inc()
        logger.info("video job %s: attempt %d (%s)", job_id, record.attempts, owner)
        attempt = _Attempt(self._backend, record, owner, limits, self._stopping, self._metrics)
        with attempt.leased():
            outputs, error = attempt.process(model)
        self._conclude(attempt, outputs, error)

    def _conclude(
        self, attempt: _Attempt, outputs: VideoOutputs | None, error: JobError | None
    ) -> None:
        backend, record, owner = self._backend, attempt.record, attempt.owner
        files, store = backend.files, backend.store
        now, ttl_s = time.time(), self._limits.ttl_s
        current = store.get(record.id)
        if current is None or current.owner != owner:  # the job went on without this attempt
            logger.warning("video job %s: attempt %s lost its lease", record.id, owner)
            return
        if error is not None or (outputs is None and current.cancel_requested):
            state: JobState = "failed" if error is not None else "cancelled"
            if store.update(
                record.id, lambda r: finished(r, owner, state, now=now, ttl_s=ttl_s, error=error)
            ):
                files.remove(record.id)
                self._count(state)
            return
        if outputs is None:  # stopping: back to the queue (or cancelled, if asked meanwhile)
            new = store.update(record.id, lambda r: released(r, owner, now=now, ttl_s=ttl_s))
            if new is not None and new.state == "queued":
                backend.queue.put(record.id)
            files.discard(attempt.folder)
            return
        files.publish(record.id, outputs)
        done = store.update(
            record.id,
            lambda r: finished(
                r,
                owner,
                "cancelled" if r.cancel_requested else "done",  # asked after the last batch
                now=now,
                ttl_s=ttl_s,
                stages=outputs.seconds,
                frames=outputs.frames,
            ),
        )
        if done is None:
            return
        self._count(done.state)
        if done.state == "done":
            files.remove_upload(record.id, record.source)
            if self._metrics is not None:
                for stage, seconds in outputs.seconds.items():
                    self._metrics.video_seconds.labels(stage=stage).observe(seconds)
        else:
            files.remove(record.id)

    def _count(self, state: JobState) -> None:
        if self._metrics is not None:
            self._metrics.video_jobs.labels(state=state).inc()


class _Attempt:
    """One claim of a job by ``owner``: its pipeline run, progress and lease."""

    def __init__(
        self,
        backend: JobBackend,
        record: JobRecord,
        owner: str,
        limits: JobLimits,
        stopping: threading.Event,
        metrics: ServiceMetrics | None,
    ) -> None:
        self.record = record
        self.owner = owner
        self.folder = backend.files.attempt(record.id, owner)
        self._backend = backend
        self._limits = limits
        self._stopping = stopping
        self._metrics = metrics
        self._frames_done = 0
        self._lost = threading.Event()
        self._too_many_frames = False

    @contextmanager
    def leased(self) -> Iterator[None]:
        """A thread renews the lease every third of it until the block ends; once the job is
        not this attempt's any more, the attempt stops."""
        lease_s = self._limits.lease_s
        done = threading.Event()

        def renew() -> None:
            while not done.wait(lease_s / 3):
                try:
                    renewal = self._backend.store.update(
                        self.record.id,
                        lambda r: renewed(r, self.owner, now=time.time(), lease_s=lease_s),
                    )
                except Exception:  # the store unreachable: try again; the lease may lapse
                    logger.exception("video job %s: renewing its lease failed", self.record.id)
                    continue
                if renewal is None:
                    self._lost.set()
                    return

        thread = threading.Thread(target=renew, name=f"ddp-lease-{self.owner[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def process(self, model: WorkerModel) -> tuple[VideoOutputs | None, JobError | None]:
        """Outputs (None: cancelled or stopping) or why the job failed."""
        record = self.record
        source = self._backend.files.directory(record.id) / record.source
        outputs: VideoOutputs | None = None
        error: JobError | None = None
        try:
            outputs = process_video(
                source,
                self.folder,
                model.predictor,
                record.options,
                progress=self._progress,
                cancelled=self._cancelled,
                run_model=model.run_model,
            )
        except VideoCancelled:
            pass
        except VideoError as invalid:
            error = JobError("invalid_video", str(invalid).removeprefix(f"{source.name}: "))
        except Exception as bug:
            logger.exception("video job %s failed", record.id)
            message = f"internal error ({type(bug).__name__}); see the log"
            error = JobError("internal_error", message)
        if self._too_many_frames:
            limit = self._limits.max_frames
            message = f"more frames decode than the limit of {limit} (the file declares fewer)"
            error = JobError("too_many_frames", message)
        return outputs, error

    def _progress(self, done: int, total: int) -> None:
        if self._metrics is not None and done > self._frames_done:
            self._metrics.video_frames.inc(done - self._frames_done)
        self._frames_done = max(done, self._frames_done)
        if done > self._limits.max_frames:  # the container's count was wrong
            self._too_many_frames = True
        self._backend.store.update(self.record.id, lambda r: progressed(r, self.owner, done, total))

    def _cancelled(self) -> bool:
        """Checked by the pipeline before each batch of frames."""
        if self._stopping.is_set() or self._lost.is_set() or self._too_many_frames:
            return True
        current = self._backend.store.get(self.record.id)
        return current is None or current.owner != self.owner or current.cancel_requested
