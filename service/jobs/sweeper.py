"""What keeps the jobs tidy and moving, run every few seconds by each API process: finished
jobs past their time to live are removed with their files; running jobs whose lease ran out
(their worker died) are queued again; queued jobs whose message was lost are put back on the
queue; directories of no job (an upload cut off by a crash) are removed. Every step is safe
to run in several processes at once: each change is one transaction on the record."""

from __future__ import annotations

import logging
import time

from service.jobs.backend import JobBackend
from service.jobs.records import lapsed, resent

logger = logging.getLogger(__name__)

ORPHAN_AGE_S = 3600.0
"""A job directory without a record, untouched this long, is left from a crash: removed.
(A younger one may be an upload still arriving on some replica.)"""


def sweep(backend: JobBackend, *, lease_s: float) -> None:
    """One pass. Blocking: run it off the event loop."""
    store, queue, files = backend.store, backend.queue, backend.files
    now = time.time()
    records = store.records()
    for record in records:
        if record.expires_at is not None and record.expires_at <= now:
            store.delete(record.id)
            files.remove(record.id)
        elif store.update(record.id, lambda r: lapsed(r, now=now)) is not None:
            logger.warning("video job %s: its worker's lease ran out; queued again", record.id)
            queue.put(record.id)
    waiting = queue.waiting()
    for record in store.records(active=True):
        if record.id in waiting:
            continue
        if store.update(record.id, lambda r: resent(r, now=now, older_than_s=lease_s)):
            logger.warning("video job %s: queued without a message; sent again", record.id)
            queue.put(record.id)
    files.remove_orphans({record.id for record in records}, older_than_s=ORPHAN_AGE_S)
