"""The smoothing benchmark end to end on two hand-made 3-frame clips in the data engine's
layout (no rendering): it runs, scores, writes its files. No claims about the numbers."""

import json

import cv2
import numpy as np

from benchmarks import video_jitter
from model.data.dense import write_dense
from model.video.render import viridis_parts


def write_clips(root, clips=2, frames=3, height=64, width=80):
    """A textured frame with a 20x30 'person' (chart 2, U/V ramps) moving 2 px per frame."""
    rng = np.random.default_rng(0)
    images = []
    for clip in range(clips):
        background = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for frame in range(frames):
            name = f"clips/clip{clip:04d}/{frame:06d}"
            image, parts = background.copy(), np.zeros((height, width), np.uint8)
            x0 = 10 + 2 * frame
            image[20:50, x0 : x0 + 20] = 200
            parts[20:50, x0 : x0 + 20] = 2
            uv = np.zeros((height, width, 2), np.float32)
            uv[20:50, x0 : x0 + 20, 0] = np.linspace(0, 1, 20)[None]
            uv[20:50, x0 : x0 + 20, 1] = np.linspace(0, 1, 30)[:, None]
            (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "dense" / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "images" / f"{name}.jpg"), image)
            write_dense(root / "dense" / f"{name}.npz", parts, uv, (parts > 0).astype(np.uint8))
            images.append(
                {
                    "id": len(images) + 1,
                    "file_name": f"images/{name}.jpg",
                    "height": height,
                    "width": width,
                    "dense_file": f"dense/{name}.npz",
                    "vid_id": clip + 1,
                    "frame_id": frame + 1,
                    "nframes": frames,
                }
            )
    data = {"images": images, "annotations": [], "categories": []}
    (root / "annotations.json").write_text(json.dumps(data))


def test_video_jitter_smoke(tmp_path):
    write_clips(tmp_path / "clips")
    out = tmp_path / "out"
    report = video_jitter.main(
        [
            "--out",
            str(out),
            "--data",
            str(tmp_path / "clips"),
            "--untrained",
            "tiny",
            "--threads",
            "1",
        ]
    )
    assert (report["clips"], report["frames"]) == (2, 6)
    for variant in video_jitter.VARIANTS:
        result = report["results"][variant]
        assert 0 <= result["part_accuracy"] <= 1
        assert result["isi_parts"] is not None and 0 < result["isi_parts"] <= 1
        assert result["seconds_per_frame"] > 0
    assert report["results"]["on"]["stage_seconds_per_frame"]["flow"] > 0
    assert report["results"]["off"]["stage_seconds_per_frame"]["flow"] == 0
    assert json.loads((out / "video_jitter.json").read_text())["frames"] == 6
    assert (out / "video_jitter.md").read_text().startswith("# Temporal smoothing")
    assert (out / "video_jitter.png").stat().st_size > 0


def test_video_jitter_ground_truth_references(tmp_path):
    """The ground-truth rows are the clip's own: its person moves 2 px a frame, so 2 x 30 px
    leave and 2 x 30 px join the painted area, and the ground-truth chart video's ITF is the
    PSNR of that change (numpy's formula, not scikit-image's)."""
    write_clips(tmp_path / "clips")
    argv = ["--out", str(tmp_path / "out"), "--data", str(tmp_path / "clips")]
    report = video_jitter.main([*argv, "--untrained", "tiny", "--threads", "1"])
    before = np.zeros((64, 80), np.uint8)
    before[20:50, 10:30] = 2
    after = np.roll(before, 2, axis=1)
    difference = viridis_parts(before).astype(np.float64) - viridis_parts(after)
    expected_itf = 10 * np.log10(255.0**2 / np.mean(difference**2))
    for variant in video_jitter.VARIANTS:
        result = report["results"][variant]
        assert result["gt_painted_change"] == 120 / (64 * 80)
        assert result["per_clip"]["clip_gt_painted_change"] == [120 / (64 * 80)] * 2
        assert abs(result["itf_viridis_gt"] - expected_itf) < 1e-9
        assert 0 <= result["painted"] <= 1 and 0 <= result["painted_change"] <= 1
    assert "slowest motion first" in (tmp_path / "out" / "video_jitter.md").read_text()


def test_chart_flips_split_into_painting_and_chart_changes():
    """Three pixels whose ground truth keeps chart 2: one goes unpainted, one changes chart,
    one stays; a fourth pixel without a person in the ground truth does not count."""
    gt_parts = np.array([[2, 2, 2, 0]], np.uint8)
    uv = np.zeros((1, 4, 2), np.float32)
    before = video_jitter.Frame(np.array([[2, 2, 2, 5]], np.uint8), uv, gt_parts, uv, {})
    after = video_jitter.Frame(np.array([[0, 3, 2, 0]], np.uint8), uv, gt_parts, uv, {})
    tally = video_jitter.Tally()
    video_jitter.score_pair(tally, before, after)
    means = tally.means()
    assert means["part_flips"] == 2 / 3
    assert means["part_flips_painting"] == 1 / 3
    assert means["part_flips_chart"] == 1 / 3
