import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/toy_scenes.py


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _video_jobs_in_a_temporary_directory(tmp_path, monkeypatch):
    # An app built without video_jobs_root keeps its jobs in the project cache across restarts
    # (the service's default); each test gets its own directory instead, so no test sees
    # another's jobs and the checkout's cache stays clean.
    monkeypatch.setenv("DDP_VIDEO_JOBS_ROOT", str(tmp_path / "video-jobs"))
