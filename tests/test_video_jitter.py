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
    instance = (gt_parts > 0).astype(np.uint8)
    before = video_jitter.Frame(np.array([[2, 2, 2, 5]], np.uint8), uv, gt_parts, uv, instance, {})
    after = video_jitter.Frame(np.array([[0, 3, 2, 0]], np.uint8), uv, gt_parts, uv, instance, {})
    tally = video_jitter.Tally()
    video_jitter.score_pair(tally, before, after)
    means = tally.means()
    assert means["part_flips"] == 2 / 3
    assert means["part_flips_painting"] == 1 / 3
    assert means["part_flips_chart"] == 1 / 3


def test_oracle_flow_smooths_with_the_labels(tmp_path, monkeypatch):
    """``--flow oracle``: the smoothed variant asks the exact flow for every adjacent pair
    (both directions; 2 clips of 3 frames: 8 flows), each answered from the labels."""
    write_clips(tmp_path / "clips")
    calls = []
    estimate = video_jitter.OracleFlow.__call__

    def counted(self, sources, targets):
        flows = estimate(self, sources, targets)
        calls.extend(
            (self._frame_of(a), self._frame_of(b)) for a, b in zip(sources, targets, strict=True)
        )
        assert self.pixels_matched == self.pixels_person > 0  # every person pixel exact
        return flows

    monkeypatch.setattr(video_jitter.OracleFlow, "__call__", counted)
    argv = ["--out", str(tmp_path / "out"), "--data", str(tmp_path / "clips"), "--flow", "oracle"]
    report = video_jitter.main([*argv, "--untrained", "tiny", "--threads", "1"])
    assert sorted(calls) == sorted([(0, 1), (1, 0), (1, 2), (2, 1)] * 2)
    assert report["setup"]["flow"] == "oracle"
    assert report["results"]["on"]["stage_seconds_per_frame"]["flow"] > 0


def body_frame(x0, shift_boundary=0, bias=0.0):
    """A 1x40 px 'person' at columns x0.. of a 4x80 frame: chart 2 on its first 28 columns,
    chart 3 on the rest, U a ramp along each chart (V = 0.5). The prediction's boundary sits
    ``shift_boundary`` columns early and its U is off by ``bias`` * U²: errors that ride with
    the body."""
    gt_parts = np.zeros((4, 80), np.uint8)
    gt_uv = np.zeros((4, 80, 2), np.float32)
    gt_parts[:, x0 : x0 + 28], gt_parts[:, x0 + 28 : x0 + 40] = 2, 3
    gt_uv[:, x0 : x0 + 28, 0] = np.linspace(0, 1, 28)
    gt_uv[:, x0 + 28 : x0 + 40, 0] = np.linspace(0, 1, 12)
    gt_uv[:, x0 : x0 + 40, 1] = 0.5
    parts = gt_parts.copy()
    parts[:, x0 + 28 - shift_boundary : x0 + 28] = 3
    uv = gt_uv.copy()
    uv[..., 0] += bias * gt_uv[..., 0] ** 2
    return video_jitter.Frame(parts, uv, gt_parts, gt_uv, (gt_parts > 0).astype(np.uint8), {})


def test_errors_riding_with_the_body_are_jitter_at_a_pixel_not_on_the_body():
    """A prediction whose errors move with the person: the fixed-pixel metrics see jitter
    and flips, the metrics following the body see none; a prediction that changes on the
    body is seen by both."""
    tally = video_jitter.Tally()
    video_jitter.score_pair(tally, body_frame(10, 3, 0.2), body_frame(12, 3, 0.2))
    means = tally.means()
    assert means["part_flips"] > 0 and means["uv_jitter"] > 0
    assert means["part_flips_surface"] == 0 and means["uv_jitter_surface"] == 0
    flicker = video_jitter.Tally()
    video_jitter.score_pair(flicker, body_frame(10, 0, 0.0), body_frame(12, 3, 0.2))
    means = flicker.means()
    assert means["part_flips_surface"] == 3 / 40  # the three columns that changed chart
    assert means["uv_jitter_surface"] > 0
