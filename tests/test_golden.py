"""Golden test: ``ddp predict`` with the shipped weights on the example image gives the files in
``tests/golden/`` (JSON, IUV PNG, instance PNG, overlay PNG).

Refactors must not change predictions: on a CPU of the kind that wrote the files (recorded in
``golden.json``: torch's CPU capability, e.g. AVX2 or AVX512), every file must be identical,
byte for byte. Another kind of CPU runs other float kernels, so there the persons and maps
must agree within rounding instead. New shipped weights change the predictions on purpose:
regenerate with ``python tests/test_golden.py`` and commit the files with the weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model.paths import CHECKOUT, DEFAULT_WEIGHTS
from service.cli import main

GOLDEN = Path(__file__).resolve().parent / "golden"
EXAMPLE = CHECKOUT / "examples" / "synthetic_scene.jpg"
STEM = EXAMPLE.stem
FILES = (f"{STEM}.json", f"{STEM}.iuv.png", f"{STEM}.instances.png", f"{STEM}.overlay.png")


def _weights_sha256() -> str:
    return hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()


def _predict(out_dir: Path) -> None:
    # From the checkout, with a relative path: the JSON records the input as given.
    with contextlib.chdir(CHECKOUT):
        example = str(EXAMPLE.relative_to(CHECKOUT))
        assert main(["predict", example, "--out", str(out_dir), "--device", "cpu"]) == 0


@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("golden")
    _predict(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def recorded() -> dict[str, str]:
    meta: dict[str, str] = json.loads((GOLDEN / "golden.json").read_text())
    if meta["weights_sha256"] != _weights_sha256():
        pytest.fail(
            "weights/ddp_default.safetensors changed since tests/golden/ was written: "
            "regenerate it with `python tests/test_golden.py` and commit both together"
        )
    return meta


def test_same_cpu_kind_gives_identical_files(predicted: Path, recorded: dict[str, str]) -> None:
    if torch.backends.cpu.get_cpu_capability() != recorded["cpu_capability"]:
        pytest.skip(
            f"golden files come from a {recorded['cpu_capability']} CPU, this one is "
            f"{torch.backends.cpu.get_cpu_capability()}: checked within rounding instead"
        )
    for name in FILES:
        assert (predicted / name).read_bytes() == (GOLDEN / name).read_bytes(), name


def test_persons_and_maps_agree_within_rounding(predicted: Path, recorded: dict[str, str]) -> None:
    got = json.loads((predicted / FILES[0]).read_text())
    want = json.loads((GOLDEN / FILES[0]).read_text())
    assert got["image_size"] == want["image_size"]
    assert len(got["persons"]) == len(want["persons"])
    for mine, theirs in zip(got["persons"], want["persons"], strict=True):
        assert mine["score"] == pytest.approx(theirs["score"], abs=2e-3)
        assert mine["box_xyxy"] == pytest.approx(theirs["box_xyxy"], abs=0.5)
    for name in FILES[1:3]:
        mine = cv2.imread(str(predicted / name), cv2.IMREAD_UNCHANGED)
        theirs = cv2.imread(str(GOLDEN / name), cv2.IMREAD_UNCHANGED)
        assert mine.shape == theirs.shape, name
        # cv2 reads B, G, R: the part label I is the blue channel
        labels = (mine[..., 0], theirs[..., 0]) if mine.ndim == 3 else (mine, theirs)
        assert np.mean(labels[0] == labels[1]) >= 0.999, name


def regenerate() -> None:
    """Rewrite ``tests/golden/`` from the shipped weights on this CPU."""
    with tempfile.TemporaryDirectory() as scratch:
        _predict(Path(scratch))
        for name in FILES:
            shutil.copyfile(Path(scratch) / name, GOLDEN / name)
    meta = {
        "weights_sha256": _weights_sha256(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }
    (GOLDEN / "golden.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {GOLDEN} ({meta['cpu_capability']} CPU)", file=sys.stderr)


if __name__ == "__main__":
    regenerate()
