"""``ddp`` end to end on a tiny network: ``predict`` writes every file readable by OpenCV,
Pillow and the NPZ reader, names outputs so that no two inputs collide, checks inputs before
the network loads; ``--device``, ``--version``, ``--help`` and ``video`` on a still image."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from model.outputs.encoding import decode_iuv_png
from model.outputs.npz import read_npz
from service.cli import main
from service.cli.predict import output_names
from service.testing import encode, random_image, tiny_checkpoint

UNTRAINED = "WARNING: randomly initialised"
"""What ``--untrained`` prints when the network loads."""


@pytest.fixture()
def tiny_weights(tmp_path):
    return tiny_checkpoint(tmp_path / "tiny.safetensors")  # 3 persons in every image


def _image(path: Path, seed: int = 0, image_format: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(random_image(seed, 90, 120), image_format))
    return path


def _predict(*args: str) -> int:
    return main(["predict", *args, "--untrained", "tiny", "--device", "cpu"])


def test_predict_writes_iuv_instances_overlay_npz_and_summary(tmp_path, tiny_weights):
    path = _image(tmp_path / "photo.jpg", image_format="JPEG")
    out = tmp_path / "out"
    assert main(["predict", str(path), "--out", str(out), "--weights", str(tiny_weights)]) == 0
    summary = json.loads((out / "photo.json").read_text())
    assert summary["input"] == str(path)
    assert summary["image_size"] == {"height": 90, "width": 120}
    assert len(summary["persons"]) == 3
    assert summary["files"] == {
        "iuv": "photo.iuv.png",
        "instances": "photo.instances.png",
        "overlay": "photo.overlay.png",
        "npz": "photo.npz",
        "json": "photo.json",
    }
    arrays = read_npz(out / "photo.npz")
    assert arrays["parts"].shape == (1, 90, 120) and len(arrays["person_score"]) == 3
    parts, uv = decode_iuv_png((out / "photo.iuv.png").read_bytes())
    assert parts.shape == (90, 120) and uv.shape == (2, 90, 120)
    np.testing.assert_array_equal(parts.numpy(), arrays["parts"][0])
    instances = cv2.imread(str(out / "photo.instances.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(instances, arrays["instances"][0])
    assert cv2.imread(str(out / "photo.overlay.png")).shape == (90, 120, 3)


def test_the_iuv_png_has_i_in_blue_for_opencv_and_pillow(tmp_path, tiny_weights):
    path = _image(tmp_path / "photo.png")
    out = tmp_path / "out"
    assert main(["predict", str(path), "--out", str(out), "--weights", str(tiny_weights)]) == 0
    parts = read_npz(out / "photo.npz")["parts"][0]
    assert parts.any()
    iuv_png = out / "photo.iuv.png"
    np.testing.assert_array_equal(cv2.imread(str(iuv_png))[..., 0], parts)  # DensePose's read
    with Image.open(iuv_png) as image:
        np.testing.assert_array_equal(np.asarray(image)[..., 2], parts)  # RGB: blue last


def test_formats_choose_the_files(tmp_path):
    path = _image(tmp_path / "photo.png")
    out = tmp_path / "out"
    assert _predict(str(path), "--out", str(out), "--formats", "npz,iuv") == 0
    assert sorted(p.name for p in out.iterdir()) == ["photo.iuv.png", "photo.npz"]


def test_unknown_format_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        _predict("x.png", "--out", str(tmp_path), "--formats", "npz,pkl")
    assert exited.value.code == 2
    assert "iuv, instances, overlay, npz, json" in capsys.readouterr().err


def test_inputs_sharing_a_stem_do_not_overwrite_each_other(tmp_path):
    inputs = [
        _image(tmp_path / "d1" / "a.jpg", 0, "JPEG"),
        _image(tmp_path / "d2" / "a.jpg", 1, "JPEG"),
        _image(tmp_path / "d2" / "a.png", 2),
    ]
    out = tmp_path / "out"
    assert _predict(*map(str, inputs), "--out", str(out), "--formats", "json") == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.json"))
    assert written == ["d1/a.json", "d2/a.jpg.json", "d2/a.png.json"]
    sources = {json.loads(p.read_text())["input"] for p in out.rglob("*.json")}
    assert sources == set(map(str, inputs))


@pytest.mark.parametrize(
    ("inputs", "names"),
    [
        (["photos/a.jpg", "photos/b.png"], ["a", "b"]),
        (["d1/a.jpg", "d2/a.jpg"], ["d1/a", "d2/a"]),
        (["x/d1/a.jpg", "x/d2/sub/b.jpg"], ["d1/a", "d2/sub/b"]),
        (["a.jpg", "a.png", "b.jpg"], ["a.jpg", "a.png", "b"]),
        (["photo.v2.jpg"], ["photo.v2"]),
    ],
)
def test_output_names_mirror_the_inputs_below_their_common_folder(inputs, names):
    assert [str(name) for name in output_names([Path(p) for p in inputs])] == names


def test_a_file_given_twice_is_processed_once(tmp_path, capsys):
    path = _image(tmp_path / "photo.png")
    assert _predict(str(path), str(tmp_path / "." / "photo.png"), "--out", str(tmp_path)) == 0
    assert capsys.readouterr().err.count("person(s) ->") == 1


def test_bad_inputs_are_reported_before_the_model_loads_and_the_rest_go_on(tmp_path, capsys):
    good = _image(tmp_path / "good.png")
    missing = tmp_path / "missing.jpg"
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    jpeg = encode(random_image(1, 90, 120), "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg[: len(jpeg) // 2])
    inputs = [missing, text, good, truncated]
    out = tmp_path / "out"
    assert _predict(*map(str, inputs), "--out", str(out)) == 1
    err = capsys.readouterr().err
    for path, reason in [(missing, "cannot be read"), (text, "not a decodable image"),
                         (truncated, "truncated")]:  # fmt: skip
        line = next(line for line in err.splitlines() if line.startswith(f"ddp: error: {path}"))
        assert reason in line
        assert err.index(line) < err.index(UNTRAINED)  # checked before the network loads
    assert "3 of 4 input(s) failed" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == [
        "good.instances.png", "good.iuv.png", "good.json", "good.npz", "good.overlay.png",
    ]  # fmt: skip


def test_only_bad_inputs_never_load_the_model(tmp_path, capsys):
    assert _predict(str(tmp_path / "missing.png"), "--out", str(tmp_path / "out")) == 1
    assert UNTRAINED not in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_cuda_without_cuda_is_a_one_line_usage_error(tmp_path, capsys):
    path = _image(tmp_path / "photo.png")
    with pytest.raises(SystemExit) as exited:
        main(["predict", str(path), "--out", str(tmp_path), "--untrained", "tiny",
              "--device", "cuda"])  # fmt: skip
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CUDA is not available" in err and UNTRAINED not in err


def test_video_refuses_a_still_image_before_the_model_loads(tmp_path, capsys):
    still = _image(tmp_path / "bus.jpg", image_format="JPEG")
    with pytest.raises(SystemExit, match="still image"):
        main(["video", str(still), "--out", str(tmp_path / "out"), "--untrained", "tiny"])
    assert UNTRAINED not in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == "ddp 0.1.0"


def test_help_imports_nothing_heavy():
    """``ddp --help`` and ``ddp <command> --help`` build the parser only: no torch, numpy or
    OpenCV, which take seconds to import."""
    code = (
        "import sys\n"
        "from service.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print(sorted({'torch', 'numpy', 'cv2', 'PIL'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_shows_defaults_but_not_empty_ones(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: auto)" in text and "(default: fp32)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_missing_weights_explain_what_to_do(tmp_path):
    path = str(_image(tmp_path / "x.png"))
    with pytest.raises(SystemExit, match="--untrained"):
        main(["predict", path, "--out", str(tmp_path), "--weights", str(tmp_path / "no")])
