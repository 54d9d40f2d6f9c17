"""A video job's record: what every API replica and worker knows of one job, kept in the job
store (``service.jobs.store``), and the transitions between its states as pure functions.

States: ``queued`` -> ``running`` (a worker claimed it and holds a lease) -> ``done``,
``failed`` or ``cancelled``; a running job whose lease ran out (its worker died) or whose
worker stopped is ``queued`` again. A transition returns the new record, or None when it does
not apply to the record as it is now (the store then leaves it unchanged).

Times are wall-clock seconds (``time.time()``): records are shared by processes on several
machines, and ``time.monotonic()`` means nothing outside the process that read it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from model.video import VideoInfo, VideoOptions

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
ACTIVE_STATES: tuple[JobState, ...] = ("queued", "running")
"""States of a job that is not finished: these count against the bounds."""


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class JobRecord:
    """One job.

    Attributes:
        id: 32 hex digits, also the name of the job's directory.
        source: the upload's file name in the job's directory (``video.<container>``).
        video: the upload, as probed.
        created_at, queued_at, started_at, finished_at, expires_at: wall-clock seconds;
            ``queued_at``: when it was last put on the queue; ``started_at``: its first start.
        frames_done: the most frames any attempt has processed (never decreases).
        owner: the attempt holding the job (a token of one claim), while running.
        lease_until: until when that attempt's lease holds; renewed while it runs.
        attempts: claims so far (more than one: a worker died or stopped mid-job).
        stages: seconds per pipeline stage of the attempt that finished it.
    """

    id: str
    source: str
    video: VideoInfo
    options: VideoOptions
    created_at: float
    queued_at: float
    state: JobState = "queued"
    frames_done: int = 0
    frames_total: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    cancel_requested: bool = False
    error: JobError | None = None
    stages: dict[str, float] = field(default_factory=dict)
    owner: str | None = None
    lease_until: float | None = None
    attempts: int = 0

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        raft = self.options.raft_weights
        fields["options"]["raft_weights"] = None if raft is None else str(raft)
        return json.dumps(fields)

    @classmethod
    def from_json(cls, text: str | bytes) -> JobRecord:
        fields: dict[str, Any] = json.loads(text)
        options = fields["options"]
        if options["raft_weights"] is not None:
            options["raft_weights"] = Path(options["raft_weights"])
        fields["options"] = VideoOptions(**options)
        fields["video"] = VideoInfo(**fields["video"])
        if fields["error"] is not None:
            fields["error"] = JobError(**fields["error"])
        return cls(**fields)


def new_job(
    job_id: str, source: str, video: VideoInfo, options: VideoOptions, *, now: float
) -> JobRecord:
    return JobRecord(
        id=job_id,
        source=source,
        video=video,
        options=options,
        created_at=now,
        queued_at=now,
        frames_total=video.frames,
    )


def claimed(record: JobRecord, owner: str, *, now: float, lease_s: float) -> JobRecord | None:
    """A worker takes a queued job (not one whose cancellation was asked)."""
    if record.state != "queued" or record.cancel_requested:
        return None
    return replace(
        record,
        state="running",
        owner=owner,
        lease_until=now + lease_s,
        attempts=record.attempts + 1,
        started_at=record.started_at if record.started_at is not None else now,
    )


def renewed(record: JobRecord, owner: str, *, now: float, lease_s: float) -> JobRecord | None:
    """The attempt ``owner`` extends its lease; None once the job is no longer its own."""
    if record.state != "running" or record.owner != owner:
        return None
    return replace(record, lease_until=now + lease_s)


def progressed(record: JobRecord, owner: str, done: int, total: int) -> JobRecord | None:
    if record.state != "running" or record.owner != owner:
        return None
    done = max(done, record.frames_done)
    if (done, total) == (record.frames_done, record.frames_total):
        return None
    return replace(record, frames_done=done, frames_total=total)


def lapsed(record: JobRecord, *, now: float) -> JobRecord | None:
    """A running job whose lease ran out (its worker died) is queued again."""
    if record.state != "running" or record.lease_until is None or record.lease_until >= now:
        return None
    return replace(record, state="queued", owner=None, lease_until=None, queued_at=now)


def released(record: JobRecord, owner: str, *, now: float, ttl_s: float) -> JobRecord | None:
    """The attempt ``owner`` stops without finishing (its worker shuts down): queued again,
    or cancelled if that was asked meanwhile."""
    if record.state != "running" or record.owner != owner:
        return None
    if record.cancel_requested:
        return finished(record, owner, "cancelled", now=now, ttl_s=ttl_s)
    return replace(record, state="queued", owner=None, lease_until=None, queued_at=now)


def finished(
    record: JobRecord,
    owner: str | None,
    state: JobState,
    *,
    now: float,
    ttl_s: float,
    error: JobError | None = None,
    stages: dict[str, float] | None = None,
    frames: int | None = None,
) -> JobRecord | None:
    """The job ends as ``state``: by its running attempt ``owner``, or (``owner`` None) while
    queued. It and its files are removed ``ttl_s`` after."""
    if owner is None and record.state != "queued":
        return None
    if owner is not None and (record.state != "running" or record.owner != owner):
        return None
    frames_done, frames_total = record.frames_done, record.frames_total
    if frames is not None:
        frames_done = frames_total = frames
    return replace(
        record,
        state=state,
        error=error,
        stages=dict(stages or {}),
        frames_done=frames_done,
        frames_total=frames_total,
        owner=None,
        lease_until=None,
        finished_at=now,
        expires_at=now + ttl_s,
    )


def cancellation_asked(record: JobRecord) -> JobRecord | None:
    """A running job is asked to stop (its attempt does so before its next batch)."""
    if record.state != "running" or record.cancel_requested:
        return None
    return replace(record, cancel_requested=True)


def stop_asked(record: JobRecord, *, now: float, ttl_s: float) -> JobRecord | None:
    """A client's ``DELETE`` of an unfinished job: a queued one is cancelled now, a running
    one asked to stop."""
    if record.state == "queued":
        return finished(record, None, "cancelled", now=now, ttl_s=ttl_s)
    return cancellation_asked(record)


def resent(record: JobRecord, *, now: float, older_than_s: float) -> JobRecord | None:
    """A job queued for ``older_than_s`` whose message is not on the queue (lost between a
    worker taking it and claiming the job) is put on the queue again."""
    if record.state != "queued" or record.queued_at > now - older_than_s:
        return None
    return replace(record, queued_at=now)
