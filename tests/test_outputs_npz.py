"""The dense-pose NPZ layout (``model.outputs.npz``): the streamed writer round-trips through
the reader, leaves nothing behind, and both refuse what is not the layout; numpy only."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.outputs import npz
from model.outputs.npz import FrameArrays, NpzWriter, frame_npz_bytes, read_npz

HEIGHT, WIDTH = 5, 7


def _frame(seed: int, persons: int) -> FrameArrays:
    rng = np.random.default_rng(seed)
    parts = rng.integers(0, 25, (HEIGHT, WIDTH)).astype(np.uint8)
    return FrameArrays(
        parts=parts,
        u=(rng.random((HEIGHT, WIDTH)) * (parts > 0)).astype(np.float16),
        v=(rng.random((HEIGHT, WIDTH)) * (parts > 0)).astype(np.float16),
        instances=rng.integers(0, persons + 1, (HEIGHT, WIDTH)).astype(np.uint16),
        boxes_xyxy=rng.random((persons, 4)).astype(np.float32) * 5,
        scores=np.sort(rng.random(persons).astype(np.float32))[::-1].copy(),
        track_ids=np.arange(10 * seed, 10 * seed + persons, dtype=np.int32),
    )


def test_streamed_frames_round_trip_with_the_person_table(tmp_path: Path) -> None:
    frames = [_frame(0, 2), _frame(1, 0), _frame(2, 3)]
    writer = NpzWriter(height=HEIGHT, width=WIDTH, spool_dir=tmp_path)
    for frame in frames:
        writer.append(frame)
    with (tmp_path / "clip.npz").open("wb") as file:
        writer.finish(file, {"fps": np.array(25.0), "smoothed": np.array(True)})
    arrays = read_npz(tmp_path / "clip.npz")
    for name in ("parts", "u", "v", "instances"):
        np.testing.assert_array_equal(arrays[name], np.stack([getattr(f, name) for f in frames]))
    np.testing.assert_array_equal(arrays["person_frame"], [0, 0, 2, 2, 2])
    np.testing.assert_array_equal(arrays["person_instance"], [1, 2, 1, 2, 3])
    np.testing.assert_array_equal(arrays["person_track_id"], [0, 1, 20, 21, 22])
    np.testing.assert_array_equal(
        arrays["person_box_xyxy"], np.concatenate([f.boxes_xyxy for f in frames])
    )
    assert float(arrays["fps"]) == 25.0 and bool(arrays["smoothed"])
    assert [p.name for p in tmp_path.iterdir()] == ["clip.npz"]


def test_spools_that_outgrow_memory_leave_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(npz, "_SPOOL_BYTES", 16)  # every spool rolls over to disk at once
    writer = NpzWriter(height=HEIGHT, width=WIDTH, spool_dir=tmp_path)
    for seed in range(4):
        writer.append(_frame(seed, 1))
    assert list(tmp_path.iterdir()) == []  # unnamed temporary files
    buffer = io.BytesIO()
    writer.finish(buffer)
    assert read_npz(buffer.getvalue())["parts"].shape == (4, HEIGHT, WIDTH)
    assert list(tmp_path.iterdir()) == []


def test_zero_frames_keep_the_frame_size() -> None:
    buffer = io.BytesIO()
    NpzWriter(height=HEIGHT, width=WIDTH).finish(buffer)
    arrays = read_npz(buffer.getvalue())
    assert arrays["parts"].shape == (0, HEIGHT, WIDTH) and arrays["person_score"].shape == (0,)
    assert arrays["person_box_xyxy"].shape == (0, 4)


def test_an_image_is_a_clip_of_one_frame() -> None:
    frame = _frame(3, 2)
    arrays = read_npz(frame_npz_bytes(frame))
    np.testing.assert_array_equal(arrays["instances"], frame.instances[None])
    assert "fps" not in arrays


def test_a_frame_of_another_size_is_refused() -> None:
    writer = NpzWriter(height=HEIGHT + 1, width=WIDTH)
    with pytest.raises(ValueError, match=f"{WIDTH}x{HEIGHT}"):
        writer.append(_frame(0, 1))
    writer.discard()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"u": np.zeros((HEIGHT, WIDTH), np.float32)}, "u: expected"),
        ({"parts": np.zeros((HEIGHT, WIDTH + 1), np.uint8)}, "expected"),
        ({"scores": np.zeros(3, np.float32)}, "boxes_xyxy: expected shape"),
        ({"instances": np.full((HEIGHT, WIDTH), 5, np.uint16)}, "has 2 persons"),
    ],
)
def test_frame_arrays_check_their_layout(change: dict[str, np.ndarray], message: str) -> None:
    fields = {name: getattr(_frame(0, 2), name) for name in FrameArrays.__dataclass_fields__}
    with pytest.raises(ValueError, match=message):
        FrameArrays(**(fields | change))


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def test_the_reader_refuses_what_is_not_the_layout() -> None:
    with pytest.raises(ValueError, match="not a readable NPZ"):
        read_npz(b"not an archive")
    single = io.BytesIO()
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="not a readable NPZ"):
        read_npz(single.getvalue())
    with pytest.raises(ValueError, match="no u, v, instances"):
        read_npz(_npz_bytes(parts=np.zeros((1, 2, 2), np.uint8)))
    good = read_npz(frame_npz_bytes(_frame(0, 1)))
    with pytest.raises(ValueError, match="u: expected float16"):
        read_npz(_npz_bytes(**(good | {"u": good["u"].astype(np.float32)})))
    with pytest.raises(ValueError, match="allow_pickle=False"):  # never unpickled
        read_npz(_npz_bytes(**(good | {"u": np.array([None], dtype=object)})))


def test_reading_the_npz_needs_no_torch() -> None:
    code = "import sys, model.outputs.npz; print('torch' in sys.modules, 'cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
