"""Job records and their stores: the transitions as pure functions; then each store (SQLite,
and a real ``redis-server``) held to the same contract: bounded creation, atomic changes that
never lose one another, and the sweeper bringing back the job of a dead worker and a lost
message."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.video import VideoInfo, VideoOptions
from service.jobs.backend import JobBackend
from service.jobs.files import JobFiles
from service.jobs.queue import redis_queue, sqlite_queue
from service.jobs.records import (
    JobRecord,
    claimed,
    finished,
    lapsed,
    new_job,
    progressed,
    released,
    renewed,
    stop_asked,
)
from service.jobs.redis_store import RedisJobStore
from service.jobs.store import SqliteJobStore
from service.jobs.sweeper import ORPHAN_AGE_S, sweep
from service.testing import redis_server

VIDEO = VideoInfo(frames=8, fps=10.0, width=96, height=64)


def job(job_id: str = "a" * 32, now: float = 1000.0) -> JobRecord:
    return new_job(job_id, "video.avi", VIDEO, VideoOptions(radius=1), now=now)


# -- transitions ------------------------------------------------------------------------------


def test_a_record_round_trips_through_json() -> None:
    record = claimed(job(), "owner", now=1001.0, lease_s=30.0)
    assert record is not None
    failed = finished(record, "owner", "failed", now=1002.0, ttl_s=60.0, stages={"total": 1.5})
    assert failed is not None
    for original in (job(), record, failed):
        assert JobRecord.from_json(original.to_json()) == original
    raft = job().options.__class__(flow="raft", raft_weights=Path("/w/raft.pth"))
    with_raft = new_job("b" * 32, "video.mp4", VIDEO, raft, now=1.0)
    assert JobRecord.from_json(with_raft.to_json()).options.raft_weights == Path("/w/raft.pth")


def test_only_one_attempt_holds_a_job() -> None:
    first = claimed(job(), "first", now=1001.0, lease_s=30.0)
    assert first is not None and (first.state, first.attempts) == ("running", 1)
    assert claimed(first, "second", now=1002.0, lease_s=30.0) is None
    assert renewed(first, "second", now=1002.0, lease_s=30.0) is None
    assert progressed(first, "second", 3, 8) is None
    assert finished(first, "second", "done", now=1003.0, ttl_s=60.0) is None
    assert finished(first, None, "cancelled", now=1003.0, ttl_s=60.0) is None  # not queued


def test_a_lapsed_lease_queues_the_job_again_and_progress_never_decreases() -> None:
    first = claimed(job(), "first", now=1001.0, lease_s=30.0)
    assert first is not None
    moved = progressed(first, "first", 5, 8)
    assert moved is not None and moved.frames_done == 5
    assert lapsed(moved, now=1030.0) is None  # the lease holds until 1031
    again = lapsed(moved, now=1032.0)
    assert again is not None and (again.state, again.owner, again.queued_at) == (
        "queued",
        None,
        1032.0,
    )
    second = claimed(again, "second", now=1033.0, lease_s=30.0)
    assert second is not None and second.attempts == 2 and second.started_at == 1001.0
    assert progressed(second, "second", 2, 8) is None  # behind the first attempt: unchanged
    ahead = progressed(second, "second", 6, 8)
    assert ahead is not None and ahead.frames_done == 6


def test_stopping_a_job() -> None:
    queued = stop_asked(job(), now=1001.0, ttl_s=60.0)
    assert queued is not None and queued.state == "cancelled" and queued.expires_at == 1061.0
    running = claimed(job(), "w", now=1001.0, lease_s=30.0)
    assert running is not None
    asked = stop_asked(running, now=1002.0, ttl_s=60.0)
    assert asked is not None and asked.state == "running" and asked.cancel_requested
    assert stop_asked(asked, now=1003.0, ttl_s=60.0) is None  # asked already
    stopped = released(asked, "w", now=1004.0, ttl_s=60.0)  # its worker stops meanwhile
    assert stopped is not None and stopped.state == "cancelled"
    handed_back = released(running, "w", now=1004.0, ttl_s=60.0)
    assert handed_back is not None and handed_back.state == "queued"


# -- stores -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobBackend]:
    files = JobFiles(tmp_path / "jobs")
    if request.param == "sqlite":
        database = tmp_path / "queue.sqlite3"
        opened = JobBackend(SqliteJobStore(database), sqlite_queue(database), files)
    else:
        url: str = request.getfixturevalue("redis_url")
        from redis import Redis

        Redis.from_url(url).flushdb()
        opened = JobBackend(RedisJobStore(url), redis_queue(url), files)
    yield opened
    opened.close()


def test_creation_stops_at_the_bound(backend: JobBackend) -> None:
    store = backend.store
    assert store.create(job("1" * 32), max_active=2)
    assert store.create(job("2" * 32), max_active=2)
    assert not store.create(job("3" * 32), max_active=2)
    assert store.get("3" * 32) is None
    store.update("1" * 32, lambda r: stop_asked(r, now=1.0, ttl_s=60.0))  # a place frees
    assert store.create(job("3" * 32), max_active=2)
    assert sorted(r.id for r in store.records(active=True)) == ["2" * 32, "3" * 32]
    assert len(store.records()) == 3
    store.delete("1" * 32)
    assert store.get("1" * 32) is None and len(store.records()) == 2


def test_concurrent_changes_are_never_lost(backend: JobBackend) -> None:
    """A worker reporting progress frame by frame and a client asking the job to stop, at the
    same time: both changes land."""
    store = backend.store
    assert store.create(job(), max_active=1)
    assert store.update(job().id, lambda r: claimed(r, "w", now=1.0, lease_s=30.0))

    def report() -> None:
        for done in range(1, 201):
            store.update(job().id, lambda r, done=done: progressed(r, "w", done, 200))

    reporter = threading.Thread(target=report)
    reporter.start()
    asked = store.update(job().id, lambda r: stop_asked(r, now=2.0, ttl_s=60.0))
    reporter.join()
    record = store.get(job().id)
    assert asked is not None and record is not None
    assert record.cancel_requested and record.frames_done == 200


def test_the_sweeper_brings_back_a_dead_workers_job_and_a_lost_message(
    backend: JobBackend,
) -> None:
    store, queue = backend.store, backend.queue
    now = time.time()
    dead, lost = job("d" * 32, now=now - 100), job("e" * 32, now=now - 100)
    for record in (dead, lost):
        assert store.create(record, max_active=8)
        backend.files.directory(record.id).mkdir()
    store.update(dead.id, lambda r: claimed(r, "killed", now=now - 50, lease_s=10.0))
    orphan = backend.files.directory("f" * 32)  # an upload cut off by a crash, long ago
    orphan.mkdir()
    (orphan / "upload").write_bytes(b"partial")
    old = now - ORPHAN_AGE_S - 1
    import os

    for path in (orphan / "upload", orphan):
        os.utime(path, (old, old))
    young = backend.files.directory("0" * 32)  # an upload arriving now
    young.mkdir()
    assert queue.waiting() == set()

    sweep(backend, lease_s=10.0)
    requeued = store.get(dead.id)
    assert requeued is not None and requeued.state == "queued" and requeued.owner is None
    assert queue.waiting() == {dead.id, lost.id}
    assert not orphan.exists() and young.exists()

    sweep(backend, lease_s=10.0)  # nothing lost now: no duplicate messages
    taken = [queue.take() for _ in range(3)]
    assert sorted(t for t in taken if t is not None) == sorted([dead.id, lost.id])
    assert taken[-1] is None


def test_the_sweeper_expires_finished_jobs_with_their_files(backend: JobBackend) -> None:
    store = backend.store
    now = time.time()
    for job_id, ttl_s in (("7" * 32, -1.0), ("8" * 32, 3600.0)):
        assert store.create(job(job_id, now=now), max_active=8)
        store.update(job_id, lambda r, t=ttl_s: finished(r, None, "cancelled", now=now, ttl_s=t))
        backend.files.directory(job_id).mkdir()
    sweep(backend, lease_s=10.0)
    assert store.get("7" * 32) is None and not backend.files.directory("7" * 32).exists()
    assert store.get("8" * 32) is not None and backend.files.directory("8" * 32).exists()
