"""The store and queue the settings name (``DDP_VIDEO_QUEUE_URL``): none, the embedded default,
a SQLite database in the jobs root (one machine; survives restarts); ``redis://...``, Redis
(any number of API replicas and workers, the results directory on a shared volume)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.data.cache import cache_dir
from service.jobs.files import JobFiles
from service.jobs.queue import JobQueue, redis_queue, sqlite_queue
from service.jobs.store import JobStore, SqliteJobStore
from service.settings import Settings

DATABASE_NAME = "queue.sqlite3"
"""The embedded backend's database in the jobs root: huey's queue tables and ``video_jobs``."""


@dataclass
class JobBackend:
    store: JobStore
    queue: JobQueue
    files: JobFiles

    def close(self) -> None:
        self.queue.close()
        self.store.close()


def jobs_root(settings: Settings) -> Path:
    """``video_jobs_root``, else ``video-jobs`` in the project cache (``$DDP_CACHE_DIR``)."""
    return settings.video_jobs_root or cache_dir() / "video-jobs"


def open_backend(settings: Settings) -> JobBackend:
    """Blocking (files, a database or a connection): call it off the event loop."""
    root = jobs_root(settings)
    files = JobFiles(root / "jobs")
    url = settings.video_queue_url
    if url is None:
        database = root / DATABASE_NAME
        return JobBackend(SqliteJobStore(database), sqlite_queue(database), files)
    from service.jobs.redis_store import RedisJobStore

    return JobBackend(RedisJobStore(url), redis_queue(url), files)
