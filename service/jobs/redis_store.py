"""Job records on Redis, for API replicas and workers on many machines: each record a JSON
string ``<prefix>:job:<id>``, the ids in the sets ``<prefix>:jobs`` (all) and
``<prefix>:active`` (queued or running: the bounds count its members). A change is an
optimistic transaction (``Redis.transaction``: ``WATCH`` the key, read, ``MULTI`` write),
retried when another client changed the key in between. The one module that imports ``redis``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from redis import Redis
from redis.client import Pipeline

from service.jobs.records import JobRecord
from service.jobs.store import Change

KEY_PREFIX = "ddp:video"
T = TypeVar("T")


class RedisJobStore:
    def __init__(self, url: str, *, prefix: str = KEY_PREFIX) -> None:
        self._redis = Redis.from_url(url, decode_responses=True)
        self._job = f"{prefix}:job:"
        self._all = f"{prefix}:jobs"
        self._active = f"{prefix}:active"

    def _write(self, pipe: Pipeline, record: JobRecord) -> None:
        """Queue the commands that store ``record`` (after ``pipe.multi()``)."""
        pipe.set(self._job + record.id, record.to_json())
        pipe.sadd(self._all, record.id)
        if record.active:
            pipe.sadd(self._active, record.id)
        else:
            pipe.srem(self._active, record.id)

    def _transaction(self, write: Callable[[Pipeline], T], key: str) -> T:
        """``write(pipe)`` with ``key`` watched, then its queued commands executed; redis-py
        runs ``write`` again whenever another client changed ``key`` in between. Its value."""
        value = self._redis.transaction(write, key, value_from_callable=True)  # type: ignore[arg-type]
        return cast(T, value)

    def create(self, record: JobRecord, *, max_active: int) -> bool:
        def bounded_write(pipe: Pipeline) -> bool:
            if pipe.scard(self._active) >= max_active:
                return False
            pipe.multi()
            self._write(pipe, record)
            return True

        return self._transaction(bounded_write, self._active)

    def get(self, job_id: str) -> JobRecord | None:
        text = self._redis.get(self._job + job_id)
        return None if text is None else JobRecord.from_json(text)

    def update(self, job_id: str, change: Change) -> JobRecord | None:
        key = self._job + job_id

        def changed_write(pipe: Pipeline) -> JobRecord | None:
            text = pipe.get(key)
            new = None if text is None else change(JobRecord.from_json(text))
            if new is not None:
                pipe.multi()
                self._write(pipe, new)
            return new

        return self._transaction(changed_write, key)

    def delete(self, job_id: str) -> None:
        with self._redis.pipeline() as pipe:
            pipe.delete(self._job + job_id)
            pipe.srem(self._all, job_id)
            pipe.srem(self._active, job_id)
            pipe.execute()

    def records(self, *, active: bool = False) -> list[JobRecord]:
        ids = sorted(self._redis.smembers(self._active if active else self._all))
        if not ids:
            return []
        texts = self._redis.mget([self._job + str(job_id) for job_id in ids])
        return [JobRecord.from_json(text) for text in texts if text is not None]

    def close(self) -> None:
        self._redis.close()
