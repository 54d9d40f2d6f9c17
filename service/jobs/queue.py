"""The queue of job ids waiting for a worker, on huey: its SQLite storage (the embedded
default: a file, no server) or its Redis storage (many API replicas and workers).

huey takes a message off the queue for good (SQLite ``delete``, Redis ``RPOP``): a worker killed
after taking one would lose the job. So a message only says "this job may be waiting"; the
job's record (``service.jobs.records``) says what it is, a worker runs a job only after
claiming its record, and the sweeper (``service.jobs.sweeper``) puts a job back on the queue
when its worker's lease ran out or its message was lost. A message for a job that is no longer
queued is dropped, so a duplicate costs nothing."""

from __future__ import annotations

from pathlib import Path

from huey import Huey, RedisHuey, SqliteHuey

QUEUE_NAME = "ddp_video"
"""huey's queue name: on Redis the list ``huey.redis.ddp_video`` holds the waiting job ids
(what the KEDA ScaledObject of docker/k8s/worker-scaledobject.yaml scales on)."""
TASK_NAME = "video_job"


def _read_only(job_id: str) -> None:
    """The task huey's registry knows the messages by. Jobs never run through huey's executor
    (its retries and result store play no part: a job's fate lives in its record): a worker
    reads the job id from the message (``JobQueue.take``)."""
    raise RuntimeError(f"video job {job_id}: run by service.jobs.worker, not by huey")


class JobQueue:
    def __init__(self, huey: Huey) -> None:
        self._huey = huey
        self._message = huey.task(name=TASK_NAME)(_read_only)

    @property
    def blocks(self) -> bool:
        """Whether ``take`` waits (up to a second) for a message when none is there."""
        return bool(getattr(self._huey.storage, "blocking", False))

    def put(self, job_id: str) -> None:
        self._huey.enqueue(self._message.s(job_id))

    def take(self) -> str | None:
        """The id of the next waiting job, off the queue; None when there is none."""
        task = self._huey.dequeue()
        return None if task is None else str(task.args[0])

    def waiting(self) -> set[str]:
        """The ids of the messages on the queue now."""
        return {str(task.args[0]) for task in self._huey.pending()}

    def close(self) -> None:
        self._huey.storage.close()


def sqlite_queue(path: Path) -> JobQueue:
    return JobQueue(SqliteHuey(QUEUE_NAME, filename=str(path), results=False))


def redis_queue(url: str) -> JobQueue:
    return JobQueue(RedisHuey(QUEUE_NAME, url=url, results=False, blocking=True, read_timeout=1))
