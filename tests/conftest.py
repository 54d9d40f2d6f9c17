import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/toy_scenes.py


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
