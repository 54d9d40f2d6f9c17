"""Dense pose of a whole video, with the paper's temporal smoothing (section 4).

Per batch of ``batch_size`` frames: ``Predictor.forward`` (the network), then the frames'
flows and eq. 5-6 on the 75-channel global IUV logits at the network's 1/4 output scale
(``model.temporal``), then ``Predictor.postprocess`` of each frame on its smoothed logits with
its own detections, persons below ``score_threshold`` dropped, track ids from
``model.video.tracking``. Frames stream through: besides the current batch only the smoothing
window (2r + 1 frames of logits; r frames, their images and raw outputs, waiting for their
future neighbours) is held.

Flow is estimated on the frames resized to the network's input size (the pixels the network
saw, 4 per logit cell), then resampled to the logit grid.

**Masks** (``VideoOptions.smooth_masks``). Smoothing the IUV logits alone leaves each frame's
persons cut by that frame's own masks, whose edges flicker (on the synthetic clips 4.7 % of
the pixels change between painted and not painted from frame to frame). The persons'
masks are matched across frames by nothing but place, so they are smoothed through the
frame's foreground: per cell, the largest M_ins and M_dp logit over the frame's persons (at
least the score threshold; clamped to ±``FOREGROUND_CLAMP``, -``FOREGROUND_CLAMP`` where
nobody is) rides through eq. 6 as two more channels, and each person's mask logits of the
frame are shifted by what smoothing changed there (smoothed minus the frame's own foreground,
on the cells the smoothed frame has active). A lone person's masks are thus smoothed
exactly; where people meet, each keeps its own edge and the pair's outline is smoothed.

``iter_video`` yields the per-frame results (``FrameResult``) for callers that want them in
memory (benchmarks); ``process_video`` writes them to files (``model.video.writers``) and says
what it wrote (``VideoOutputs``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Protocol, TypeVar

import cv2
import numpy as np
import torch

from model.inference.postprocess import LOGIT_STRIDE
from model.inference.predictor import Predictor
from model.inference.preprocess import PreparedBatch
from model.structures import DDPOutput
from model.temporal import FlowEstimator, SmoothedFrame, TemporalSmoother, build_flow_estimator
from model.video.errors import VideoCancelled, VideoError
from model.video.io import probe, read_frames
from model.video.options import VideoOptions
from model.video.results import FrameResult
from model.video.tracking import PersonTracker
from model.video.writers import VideoWriters

T = TypeVar("T")

STAGES = ("decode", "model", "flow", "smoothing", "postprocess", "tracking", "encoding", "total")
"""Keys of ``VideoOutputs.seconds``: wall-clock seconds spent in each stage over the clip."""

_DEFAULT_OPTIONS = VideoOptions()
FOREGROUND_CLAMP = 6.0
"""Foreground logits vote within ±this (sigmoid 0.0025-0.9975): one confident frame does not
outvote the window, and a frame without a person there votes -this."""


class ModelRunner(Protocol):
    """How model calls run: ``runner(fn)`` calls ``fn()`` (e.g. on a dedicated model thread)
    and returns its result."""

    def __call__(self, fn: Callable[[], T]) -> T: ...


def _call_directly(fn: Callable[[], T]) -> T:
    return fn()


@dataclass
class VideoOutputs:
    """What ``process_video`` wrote (see docs/video.md for the NPZ keys)."""

    npz: Path
    parts_mp4: Path
    viridis_mp4: Path
    frames: int
    fps: float
    width: int
    height: int
    seconds: dict[str, float]


@dataclass
class _Waiting:
    """A frame whose logits are in the smoother: the frame and its views of the batch's
    output and input; post-processing swaps the smoothed logits into ``output``."""

    image_rgb: np.ndarray
    output: DDPOutput
    batch: PreparedBatch
    foreground: torch.Tensor | None
    """(2, h, w) the frame's own foreground logits (``foreground_logits``) when masks are
    smoothed, else None."""


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    iterator = iter(frames)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _add_time(seconds: dict[str, float], stage: str, start: float) -> None:
    seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start


def foreground_logits(output: DDPOutput, score_threshold: float) -> torch.Tensor:
    """(B, 2, h, w) float32: per image and cell, the largest M_ins and M_dp logit over its
    persons scoring at least ``score_threshold``, within ±``FOREGROUND_CLAMP`` (-it where
    none is)."""
    batch, _, height, width = output.iuv_logits.shape
    detections = output.detections
    device = output.iuv_logits.device
    foreground = torch.full((batch, 2, height, width), -FOREGROUND_CLAMP, device=device)
    logits = detections.mask_logits.float().clamp(-FOREGROUND_CLAMP, FOREGROUND_CLAMP)
    for b in range(batch):
        mine = (detections.image_index == b) & (detections.scores >= score_threshold)
        if bool(mine.any()):
            foreground[b] = logits[mine].amax(dim=0)
    return foreground


def iter_video(
    frames: Iterable[np.ndarray],
    predictor: Predictor,
    options: VideoOptions = _DEFAULT_OPTIONS,
    *,
    flow: FlowEstimator | None = None,
    seconds: dict[str, float] | None = None,
    cancelled: Callable[[], bool] | None = None,
    run_model: ModelRunner | None = None,
) -> Iterator[FrameResult]:
    """Per-frame dense pose of a stream of (H, W, 3) uint8 RGB frames of one size, in order.

    Args:
        flow: the flow estimator (default: built from ``options``); unused without smoothing.
        seconds: stage -> seconds, accumulated into (``model``, ``flow``, ``smoothing``,
            ``postprocess``, ``tracking``).
        cancelled: checked before each batch; True raises ``VideoCancelled``.
        run_model: runs the network's forward passes and the flow estimation (default: here).
    """
    run = run_model or _call_directly
    config = options.smoothing()
    times = seconds if seconds is not None else {}
    estimator = flow
    if estimator is None and config.radius > 0:
        estimator = build_flow_estimator(
            options.flow, raft_weights=options.raft_weights, device=predictor.device
        )

    def estimate(sources: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> torch.Tensor:
        assert estimator is not None
        return run(partial(estimator, sources, targets))

    smoother = TemporalSmoother(estimate, config)
    smooth_masks = config.radius > 0 and options.smooth_masks
    score_threshold = options.score_threshold
    if score_threshold is None:
        score_threshold = predictor.config.instance.detection_score_threshold
    tracker = PersonTracker()
    waiting: dict[int, _Waiting] = {}
    pushed = 0
    shape: tuple[int, ...] | None = None
    for chunk in _batches(frames, options.batch_size):
        if cancelled is not None and cancelled():
            raise VideoCancelled(f"cancelled after {pushed} frames")
        shape = shape or chunk[0].shape
        if any(image.shape != shape for image in chunk):
            raise VideoError(f"the frames of a video must share one size, the first is {shape}")
        start = time.perf_counter()
        output, batch = run(partial(predictor.forward, chunk))
        _add_time(times, "model", start)
        logits = output.iuv_logits
        foreground = foreground_logits(output, score_threshold) if smooth_masks else None
        if foreground is not None:  # votes only where the frame is active, like the logits
            votes = torch.where(output.active[:, None], foreground, 0.0)
            logits = torch.cat([logits, votes.to(logits)], dim=1)
        for b, image in enumerate(chunk):
            own = None if foreground is None else foreground[b]
            waiting[pushed + b] = _Waiting(image, output.image(b), batch.image(b), own)
        pushed += len(chunk)
        height, width = (int(v) for v in batch.image_sizes[0])
        flow_frames = chunk
        if config.radius > 0:
            start = time.perf_counter()
            flow_frames = [
                cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) for image in chunk
            ]
            _add_time(times, "flow", start)
        with torch.inference_mode():
            ready = smoother.push(
                flow_frames,
                logits,
                output.active,
                extent=(height / LOGIT_STRIDE, width / LOGIT_STRIDE),
            )
        yield from _finish(ready, waiting, predictor, tracker, options.score_threshold, times)
    with torch.inference_mode():
        ready = smoother.finish()
    yield from _finish(ready, waiting, predictor, tracker, options.score_threshold, times)
    for stage in ("flow", "smoothing"):
        times[stage] = times.get(stage, 0.0) + smoother.seconds[stage]


def _finish(
    ready: list[SmoothedFrame],
    waiting: dict[int, _Waiting],
    predictor: Predictor,
    tracker: PersonTracker,
    score_threshold: float | None,
    seconds: dict[str, float],
) -> Iterator[FrameResult]:
    """Post-process smoothed frames on their own detections, filter, track."""
    for smoothed in ready:
        frame = waiting.pop(smoothed.index)
        start = time.perf_counter()
        channels = frame.output.iuv_logits.shape[1]
        detections = frame.output.detections
        if frame.foreground is not None:
            change = smoothed.logits[channels:] - frame.foreground  # (2, h, w)
            change = torch.where(smoothed.active, change, 0.0)
            detections = replace(detections, mask_logits=detections.mask_logits + change)
        output = replace(
            frame.output,
            detections=detections,
            iuv_logits=smoothed.logits[None, :channels],
            active=smoothed.active[None],
        )
        with torch.inference_mode():
            result = predictor.postprocess(output, frame.batch)[0]
        result = result.best(score_threshold=score_threshold)
        _add_time(seconds, "postprocess", start)
        start = time.perf_counter()
        track_ids = tracker.update(result.masks.numpy())
        _add_time(seconds, "tracking", start)
        yield FrameResult(smoothed.index, frame.image_rgb, result, track_ids)


def _timed(frames: Iterator[np.ndarray], seconds: dict[str, float]) -> Iterator[np.ndarray]:
    """``frames``, booking the time spent producing them as ``decode``."""
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        _add_time(seconds, "decode", start)
        if frame is None:
            return
        yield frame


def process_video(
    source: Path,
    out_dir: Path,
    predictor: Predictor,
    options: VideoOptions = _DEFAULT_OPTIONS,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    run_model: ModelRunner | None = None,
) -> VideoOutputs:
    """Dense pose of the video ``source`` into ``out_dir``: ``<stem>.npz``,
    ``<stem>.parts.mp4`` and ``<stem>.viridis.mp4`` (H.264, the input's size and fps).

    Args:
        progress: called with (frames done, frames in the video) at the start and per frame.
        cancelled: checked between batches; True raises ``VideoCancelled``.
        run_model: runs the forward passes and flow estimation (default: in this thread).

    Raises:
        VideoError: unreadable input, no frames, no frame rate, or fewer frames decoded than
            the container declares (truncated or corrupt; a shortfall up to 2 %, at least one
            frame, is tolerated because some containers only estimate their count).
        VideoCancelled: when ``cancelled()`` returned True.

    On any error the partial outputs are removed.
    """
    start = time.perf_counter()
    source, out_dir = Path(source), Path(out_dir)
    info = probe(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds = dict.fromkeys(STAGES, 0.0)
    outputs = VideoWriters(out_dir, source.stem, info.width, info.height, info.fps)
    written = 0
    try:
        if progress is not None:
            progress(0, info.frames)
        frames = _timed(read_frames(source), seconds)
        for frame in iter_video(
            frames, predictor, options, seconds=seconds, cancelled=cancelled, run_model=run_model
        ):
            encode_start = time.perf_counter()
            outputs.write(frame)
            _add_time(seconds, "encoding", encode_start)
            written += 1
            if progress is not None:
                progress(written, max(info.frames, written))
        if written == 0 or written < info.fewest_frames:
            raise VideoError(
                f"{source.name}: truncated or corrupt: decoded {written} of the "
                f"{info.frames} frames it declares"
            )
        encode_start = time.perf_counter()
        outputs.close(info.fps, options.smooth)
        _add_time(seconds, "encoding", encode_start)
    except BaseException:
        outputs.discard()
        raise
    seconds["total"] = time.perf_counter() - start
    return VideoOutputs(
        npz=outputs.npz_path,
        parts_mp4=outputs.parts_mp4.path,
        viridis_mp4=outputs.viridis_mp4.path,
        frames=written,
        fps=info.fps,
        width=info.width,
        height=info.height,
        seconds=seconds,
    )
