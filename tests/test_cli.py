"""``ddp predict`` end to end on a tiny checkpoint: every file is written and readable."""

import json

import cv2
import numpy as np
import pytest

from model.checkpoint import save_checkpoint
from model.config import tiny_config
from model.network.ddp import build_ddp
from model.outputs.encoding import decode_iuv_png
from service.cli import main


@pytest.fixture()
def tiny_weights(tmp_path):
    config = tiny_config()
    return save_checkpoint(build_ddp(config), config, tmp_path / "tiny.safetensors")


def test_predict_writes_iuv_instances_overlay_and_summary(tmp_path, tiny_weights):
    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), image)
    out = tmp_path / "out"
    assert main(["predict", str(path), "--out", str(out), "--weights", str(tiny_weights)]) == 0
    summary = json.loads((out / "photo.json").read_text())
    assert summary["image_size"] == {"height": 90, "width": 120}
    assert isinstance(summary["persons"], list)
    parts, uv = decode_iuv_png((out / "photo.iuv.png").read_bytes())
    assert parts.shape == (90, 120) and uv.shape == (2, 90, 120)
    assert cv2.imread(str(out / "photo.instances.png"), cv2.IMREAD_UNCHANGED).shape == (90, 120)
    assert cv2.imread(str(out / "photo.overlay.png")).shape == (90, 120, 3)


def test_missing_weights_explain_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="--untrained"):
        main(["predict", "x.png", "--out", str(tmp_path), "--weights", str(tmp_path / "no")])


def test_unreadable_image_is_a_clear_error(tmp_path, tiny_weights):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        main(["predict", str(bad), "--out", str(tmp_path), "--weights", str(tiny_weights)])
