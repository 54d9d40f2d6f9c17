"""The results directory, which every API replica and worker reads (a shared volume on
several machines): one directory per job, named by its id, holding

* the upload, ``video.<container>`` (removed once the job is done),
* ``.attempt-<token>/``: the files an attempt is writing (``process_video``'s output folder),
* ``result.npz``, ``parts.mp4``, ``viridis.mp4``: an attempt's finished outputs, each renamed
  into place whole (an attempt killed half-way leaves only its ``.attempt-*`` folder, removed
  by the next attempt), before the record says ``done``.

An object store would replace this module: ``publish`` uploading the finished outputs and the
result routes redirecting to their (signed) URLs; uploads and attempts stay on local disk.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from model.video import VideoOutputs

ResultKind = Literal["npz", "parts_mp4", "viridis_mp4"]
RESULT_NAMES: dict[ResultKind, str] = {
    "npz": "result.npz",
    "parts_mp4": "parts.mp4",
    "viridis_mp4": "viridis.mp4",
}
_ATTEMPT_PREFIX = ".attempt-"


class JobFiles:
    """The job directories under ``root`` (created)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root

    def directory(self, job_id: str) -> Path:
        return self.root / job_id

    def result(self, job_id: str, kind: ResultKind) -> Path:
        return self.directory(job_id) / RESULT_NAMES[kind]

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A new, empty job directory (its name a new job id) to receive an upload; removed
        on any error."""
        directory = self.root / uuid.uuid4().hex
        directory.mkdir()
        try:
            yield directory
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def attempt(self, job_id: str, owner: str) -> Path:
        """The (not yet created) output folder of attempt ``owner``; earlier attempts' folders
        are removed (their workers died, or lost the job)."""
        for stale in self.directory(job_id).glob(_ATTEMPT_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        return self.directory(job_id) / (_ATTEMPT_PREFIX + owner)

    def publish(self, job_id: str, outputs: VideoOutputs) -> None:
        """Rename an attempt's finished outputs into place and remove its folder."""
        for kind in RESULT_NAMES:
            Path(getattr(outputs, kind)).replace(self.result(job_id, kind))
        self.discard(outputs.npz.parent)

    def discard(self, attempt: Path) -> None:
        """Remove an attempt's folder and what it holds."""
        shutil.rmtree(attempt, ignore_errors=True)

    def remove_upload(self, job_id: str, source: str) -> None:
        (self.directory(job_id) / source).unlink(missing_ok=True)

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.directory(job_id), ignore_errors=True)

    def remove_orphans(self, known: set[str], *, older_than_s: float) -> list[str]:
        """Remove the directories of no known job (an upload cut off by a crash) untouched for
        ``older_than_s``; their names. A younger one may be an upload still arriving."""
        cutoff = time.time() - older_than_s
        removed = []
        for directory in self.root.iterdir():
            if directory.name in known or not directory.is_dir():
                continue
            if _last_touched(directory) < cutoff:
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(directory.name)
        return removed


def _last_touched(directory: Path) -> float:
    """The latest modification time of ``directory`` and everything in it (files may vanish
    meanwhile)."""
    times = [directory.stat().st_mtime]
    for path in directory.rglob("*"):
        try:
            times.append(path.stat().st_mtime)
        except FileNotFoundError:
            continue
    return max(times)
