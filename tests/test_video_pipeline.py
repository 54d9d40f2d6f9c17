"""``process_video`` / ``iter_video`` end to end on a tiny generated clip with the untrained
``tiny`` network (detection thresholds at 0 so that it finds persons), and ``ddp video``."""

import copy
import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from model.config import tiny_config
from model.inference.predictor import Predictor
from model.outputs.npz import read_npz
from model.video import (
    VideoCancelled,
    VideoError,
    VideoOptions,
    iter_video,
    process_video,
)
from model.video.io import H264Writer, read_frames
from model.video.pipeline import FOREGROUND_CLAMP, STAGES
from model.video.render import VIRIDIS_BACKGROUND_RGB
from service.cli import main

FRAMES, HEIGHT, WIDTH, FPS = 6, 64, 80, 12.0


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    config = tiny_config()
    instance = dataclasses.replace(
        config.instance,
        candidate_score_threshold=0.0,
        detection_score_threshold=0.0,
        max_detections=3,
    )
    return Predictor.untrained(config.replace(instance=instance), device="cpu")


def clip_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (HEIGHT, WIDTH + 2 * FRAMES, 3), dtype=np.uint8)
    return [np.ascontiguousarray(texture[:, 2 * t : 2 * t + WIDTH]) for t in range(FRAMES)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "walk.mp4"
    with H264Writer(path, width=WIDTH, height=HEIGHT, fps=FPS, crf=0) as writer:
        for frame in clip_frames():
            writer.write(frame)
    return path


def test_process_video_writes_npz_and_two_playable_videos(tmp_path, clip, predictor):
    progress: list[tuple[int, int]] = []
    out = process_video(
        clip,
        tmp_path,
        predictor,
        VideoOptions(score_threshold=0.0, batch_size=4),
        progress=lambda done, total: progress.append((done, total)),
    )
    assert (out.frames, out.width, out.height, out.fps) == (FRAMES, WIDTH, HEIGHT, FPS)
    assert progress == [(i, FRAMES) for i in range(FRAMES + 1)]
    assert set(out.seconds) == set(STAGES) and all(v >= 0 for v in out.seconds.values())
    assert out.seconds["flow"] > 0 and out.seconds["smoothing"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "walk.npz",
        "walk.parts.mp4",
        "walk.viridis.mp4",
    ]
    with np.load(out.npz, allow_pickle=False) as npz:
        data = {name: npz[name] for name in npz.files}
    assert data["parts"].shape == (FRAMES, HEIGHT, WIDTH) and data["parts"].dtype == np.uint8
    assert data["u"].dtype == data["v"].dtype == np.float16
    assert data["instances"].dtype == np.uint16 and data["instances"].shape == data["parts"].shape
    assert data["parts"].max() <= 24 and (data["parts"] > 0).any()
    for uv in (data["u"], data["v"]):
        assert uv.min() >= 0 and uv.max() <= 1 and (uv[data["parts"] == 0] == 0).all()
    persons = len(data["person_frame"])
    assert persons == 3 * FRAMES  # max_detections, threshold 0
    assert data["person_box_xyxy"].shape == (persons, 4)
    assert data["person_score"].shape == data["person_track_id"].shape == (persons,)
    assert float(data["fps"]) == FPS and bool(data["smoothed"])
    assert set(read_npz(out.npz)) == set(data)  # the one reader checks and accepts it
    for t in range(FRAMES):  # the instance map only holds the labels of that frame's persons
        labels = set(np.unique(data["instances"][t]).tolist()) - {0}
        assert labels <= set(data["person_instance"][data["person_frame"] == t].tolist())
        assert np.array_equal(data["person_instance"][data["person_frame"] == t], [1, 2, 3])
    for video in (out.parts_mp4, out.viridis_mp4):
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert (stream.codec_context.width, stream.codec_context.height) == (WIDTH, HEIGHT)
            assert float(stream.average_rate) == FPS
        assert len(list(read_frames(video))) == FRAMES
    viridis = np.stack(list(read_frames(out.viridis_mp4)))
    background = viridis[data["parts"] == 0].astype(float).mean(0)
    np.testing.assert_allclose(background, VIRIDIS_BACKGROUND_RGB, atol=6)


def batch_results(predictor, frames, batch):
    return [r for i in range(0, len(frames), batch) for r in predictor(frames[i : i + batch])]


def test_without_smoothing_the_results_are_the_predictors(predictor):
    frames = clip_frames()
    options = VideoOptions(smooth=False, batch_size=3, score_threshold=0.0)
    results = [f.result for f in iter_video(frames, predictor, options)]
    expected = batch_results(predictor, frames, 3)
    assert len(results) == len(expected) == FRAMES
    for got, want in zip(results, expected, strict=True):
        assert torch.equal(got.boxes_xyxy, want.boxes_xyxy)
        assert torch.equal(got.masks, want.masks)
        assert all(torch.equal(a, b) for a, b in zip(got.parts, want.parts, strict=True))
        assert all(torch.equal(a, b) for a, b in zip(got.uv, want.uv, strict=True))


def test_smoothing_the_iuv_only_changes_the_charts_but_not_the_persons(predictor):
    frames = clip_frames()
    options = VideoOptions(score_threshold=0.0, smooth_masks=False)
    smooth = list(iter_video(frames, predictor, options))
    plain = batch_results(predictor, frames, 4)
    changed = 0
    for got, want in zip(smooth, plain, strict=True):
        assert torch.equal(got.result.boxes_xyxy, want.boxes_xyxy)
        assert torch.equal(got.result.masks, want.masks)
        changed += sum(int((a != b).sum()) for a, b in zip(got.result.uv, want.uv, strict=True))
    assert changed > 0


def test_smoothed_masks_follow_the_smoothed_foreground(predictor):
    """Against a reference of eq. 6 on the foreground with zero flow (a vote is valid where
    its frame is active; equal weights: the mean of the valid votes), frames one at a time."""
    frames = clip_frames()

    def zero_flow(sources, targets):
        return torch.zeros(len(sources), 2, *sources[0].shape[:2])

    options = VideoOptions(score_threshold=0.0, batch_size=1)
    got = [f.result for f in iter_video(frames, predictor, options, flow=zero_flow)]
    passes = [predictor.forward([frame]) for frame in frames]
    foregrounds, actives = [], []
    for output, _ in passes:
        logits = output.detections.mask_logits.clamp(-FOREGROUND_CLAMP, FOREGROUND_CLAMP)
        if len(logits) == 0:
            logits = torch.full((1, *logits.shape[1:]), -FOREGROUND_CLAMP)
        foregrounds.append(logits.amax(dim=0))  # (2, h, w): every person of the one image
        actives.append(output.active[0])
    changed = 0
    for t, (output, batch) in enumerate(passes):
        window = range(max(0, t - options.radius), min(len(frames), t + options.radius + 1))
        valid = torch.stack([actives[k] for k in window]).float()  # (J, h, w)
        votes = torch.stack([foregrounds[k] for k in window]) * valid[:, None]
        active = valid.sum(0) > 0
        smoothed = votes.sum(0) / valid.sum(0).clamp(min=1)
        shift = torch.where(active, smoothed - foregrounds[t], 0.0)
        detections = dataclasses.replace(
            output.detections, mask_logits=output.detections.mask_logits + shift
        )
        expected = predictor.postprocess(dataclasses.replace(output, detections=detections), batch)
        plain = predictor.postprocess(output, batch)[0]
        assert got[t].masks.shape == expected[0].masks.shape
        assert (got[t].masks == expected[0].masks).float().mean() >= 0.999
        changed += int((got[t].masks != plain.masks).sum())
    assert changed > 0  # the masks did move


def test_model_calls_go_through_run_model_and_flows_are_estimated_once(predictor):
    calls: list[str] = []
    pairs: list[tuple[int, int]] = []

    def run_model(fn):
        calls.append("call")
        return fn()

    def flow(sources, targets):
        pairs.extend((id(s), id(t)) for s, t in zip(sources, targets, strict=True))
        return torch.zeros(len(sources), 2, *sources[0].shape[:2])

    frames = list(
        iter_video(clip_frames(), predictor, VideoOptions(), flow=flow, run_model=run_model)
    )
    assert len(frames) == FRAMES
    assert len(calls) == 2 + 2  # two forward passes (4 + 2 frames), one flow call per batch
    assert len(pairs) == 2 * (FRAMES - 1)


def test_cancelling_stops_between_batches_and_removes_partial_outputs(tmp_path, clip, predictor):
    polls: list[int] = []

    def cancelled() -> bool:
        polls.append(1)
        return len(polls) > 1

    with pytest.raises(VideoCancelled):
        process_video(clip, tmp_path, predictor, VideoOptions(batch_size=2), cancelled=cancelled)
    assert list(tmp_path.iterdir()) == []


def test_unusable_inputs_are_video_errors(tmp_path, clip, predictor):
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    with pytest.raises(VideoError, match="not a video file"):
        process_video(text, tmp_path / "a", predictor)
    zero = tmp_path / "zero.mp4"
    with av.open(str(zero), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()
    with pytest.raises(VideoError):
        process_video(zero, tmp_path / "b", predictor)


def test_a_truncated_video_is_a_video_error_and_leaves_nothing(tmp_path, predictor):
    full = tmp_path / "long.mp4"
    rng = np.random.default_rng(0)
    with H264Writer(full, width=WIDTH, height=HEIGHT, fps=FPS) as writer:
        for _ in range(24):
            writer.write(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    out = tmp_path / "out"
    with pytest.raises(VideoError, match="truncated"):
        process_video(cut, out, predictor, VideoOptions(smooth=False))
    assert list(out.iterdir()) == []


def test_options_are_validated():
    with pytest.raises(ValueError, match="batch_size"):
        VideoOptions(batch_size=0)
    with pytest.raises(ValueError, match="raft_weights"):
        VideoOptions(flow="raft")
    with pytest.raises(ValueError, match="radius"):
        VideoOptions(radius=-1)
    assert VideoOptions(smooth=False).smoothing().radius == 0


def test_ddp_video_command(tmp_path, clip, capsys):
    out = tmp_path / "out"
    assert (
        main(["video", str(clip), "--out", str(out), "--untrained", "tiny", "--device", "cpu"]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "walk.npz",
        "walk.parts.mp4",
        "walk.viridis.mp4",
    ]
    assert "6 frames" in capsys.readouterr().out


def test_frames_of_changing_size_are_a_video_error(predictor):
    frames = [np.zeros((32, 40, 3), np.uint8)] * 3 + [np.zeros((40, 32, 3), np.uint8)]
    with pytest.raises(VideoError, match="one size"):
        list(iter_video(frames, predictor, VideoOptions(batch_size=2)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_smoothing_runs_on_cuda_and_agrees_with_the_cpu(predictor):
    """The smoothed logits and foreground stay on the network's device."""
    model = copy.deepcopy(predictor.model).to("cuda")
    cuda = Predictor(model, predictor.config, torch.device("cuda"), predictor.precision)
    options = VideoOptions(score_threshold=0.0)
    on_cpu = [f.result for f in iter_video(clip_frames(), predictor, options)]
    on_cuda = [f.result for f in iter_video(clip_frames(), cuda, options)]
    for one, other in zip(on_cpu, on_cuda, strict=True):
        assert len(one) == len(other)
        assert (one.masks == other.masks.cpu()).float().mean() >= 0.9  # autocast on CUDA
