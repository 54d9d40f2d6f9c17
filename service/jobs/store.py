"""Where job records live: the ``JobStore`` protocol, and its embedded implementation on SQLite
(``SqliteJobStore``: one table beside huey's in the queue database, shared by the processes of
one machine). ``service.jobs.redis_store`` holds the Redis one, for many machines.

Every change is a read-modify-write in one transaction (``update``): the API asking a running
job to stop and its worker reporting progress never overwrite each other."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from service.jobs.records import ACTIVE_STATES, JobRecord

Change = Callable[[JobRecord], JobRecord | None]
"""A transition: the new record, or None to leave it unchanged (``service.jobs.records``)."""


class JobStore(Protocol):
    def create(self, record: JobRecord, *, max_active: int) -> bool:
        """Add ``record`` unless ``max_active`` jobs are queued or running already (False)."""
        ...

    def get(self, job_id: str) -> JobRecord | None: ...

    def update(self, job_id: str, change: Change) -> JobRecord | None:
        """Apply ``change`` atomically; the new record, or None when the job is missing or
        ``change`` left it unchanged."""
        ...

    def delete(self, job_id: str) -> None: ...

    def records(self, *, active: bool = False) -> list[JobRecord]:
        """Every job, or (``active``) the queued and running ones."""
        ...

    def close(self) -> None: ...


_SCHEMA = (
    "create table if not exists video_jobs "
    "(id text primary key, state text not null, record text not null)"
)
_ACTIVE = f"state in ({', '.join(repr(state) for state in ACTIVE_STATES)})"


class SqliteJobStore:
    """Records in the table ``video_jobs`` of the SQLite database ``path``."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self._db = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("pragma journal_mode=wal")
            self._db.execute(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``begin immediate``: other processes wait, up to the busy
        timeout, instead of failing half-way)."""
        with self._lock:
            self._db.execute("begin immediate")
            try:
                yield self._db
            except BaseException:
                self._db.execute("rollback")
                raise
            self._db.execute("commit")

    def create(self, record: JobRecord, *, max_active: int) -> bool:
        with self._transaction() as db:
            (active,) = db.execute(f"select count(*) from video_jobs where {_ACTIVE}").fetchone()
            if active >= max_active:
                return False
            db.execute(
                "insert into video_jobs values (?, ?, ?)",
                (record.id, record.state, record.to_json()),
            )
        return True

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(
                "select record from video_jobs where id = ?", (job_id,)
            ).fetchone()
        return None if row is None else JobRecord.from_json(row[0])

    def update(self, job_id: str, change: Change) -> JobRecord | None:
        with self._transaction() as db:
            row = db.execute("select record from video_jobs where id = ?", (job_id,)).fetchone()
            new = None if row is None else change(JobRecord.from_json(row[0]))
            if new is not None:
                db.execute(
                    "update video_jobs set state = ?, record = ? where id = ?",
                    (new.state, new.to_json(), job_id),
                )
        return new

    def delete(self, job_id: str) -> None:
        with self._transaction() as db:
            db.execute("delete from video_jobs where id = ?", (job_id,))

    def records(self, *, active: bool = False) -> list[JobRecord]:
        query = "select record from video_jobs" + (f" where {_ACTIVE}" if active else "")
        with self._lock:
            rows = self._db.execute(query).fetchall()
        return [JobRecord.from_json(row[0]) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
