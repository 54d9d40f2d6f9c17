"""Dense pose of a whole video, with the paper's temporal smoothing (section 4).

Per batch of ``batch_size`` frames: ``Predictor.forward`` (the network), then the frames'
flows and eq. 5-6 on the 75-channel global IUV logits at the network's 1/4 output scale
(``model.temporal``), then ``Predictor.postprocess`` of each frame on its smoothed logits with
its own detections, persons below ``score_threshold`` dropped, track ids from
``model.video.tracking``. Frames stream through: besides the current batch only the smoothing
window (2r + 1 frames of logits, r frames of images waiting for their future neighbours) is
held.

Flow is estimated on the frames resized to the network's input size (the pixels the network
saw, 4 per logit cell), then resampled to the logit grid.

``process_video`` writes the outputs (``VideoOutputs``); ``iter_video`` yields the per-frame
results for callers that want them in memory (benchmarks).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Protocol, TypeVar

import cv2
import numpy as np
import torch

from model.encoding import paste_owners
from model.postprocess import LOGIT_STRIDE
from model.predictor import Predictor
from model.preprocess import PreparedBatch
from model.structures import DDPOutput, DensePoseResult, Detections
from model.temporal import (
    FlowEstimator,
    FlowName,
    SmoothedFrame,
    SmoothingConfig,
    TemporalSmoother,
    build_flow_estimator,
)
from model.video.errors import VideoCancelled, VideoError
from model.video.io import H264Writer, probe, read_frames
from model.video.npz import FrameArrayWriter
from model.video.render import viridis_parts
from model.video.tracking import PersonTracker
from model.visualize import draw_overlay

T = TypeVar("T")

STAGES = ("decode", "model", "flow", "smoothing", "postprocess", "tracking", "encoding", "total")
"""Keys of ``VideoOutputs.seconds``: wall-clock seconds spent in each stage over the clip."""


class ModelRunner(Protocol):
    """How model calls run: ``runner(fn)`` calls ``fn()`` (e.g. on a dedicated model thread)
    and returns its result."""

    def __call__(self, fn: Callable[[], T]) -> T: ...


def _call_directly(fn: Callable[[], T]) -> T:
    return fn()


@dataclass(frozen=True)
class VideoOptions:
    """How a video is processed.

    ``smooth`` = False is the "w/o temporal smoothing" setting (no flow is computed); ``radius``,
    ``centre_weight`` and ``neighbour_weight`` are eq. 6's window and weights (the paper: 2 and
    0.2 everywhere); ``flow``: ``dis`` (OpenCV, CPU) or ``raft`` (needs ``raft_weights``);
    ``occlusion_check`` also drops votes failing a forward-backward flow check.
    """

    smooth: bool = True
    flow: FlowName = "dis"
    radius: int = 2
    neighbour_weight: float = 0.2
    batch_size: int = 4
    raft_weights: Path | None = None
    score_threshold: float = 0.3
    centre_weight: float = 0.2
    occlusion_check: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if self.flow not in ("dis", "raft"):
            raise ValueError(f"flow must be 'dis' or 'raft', got {self.flow!r}")
        if self.smooth and self.flow == "raft" and self.raft_weights is None:
            raise ValueError("flow 'raft' needs raft_weights (no RAFT weights ship)")
        self.smoothing()  # validates radius and weights

    def smoothing(self) -> SmoothingConfig:
        """Eq. 6's settings; radius 0 (frames unchanged) when ``smooth`` is False."""
        return SmoothingConfig(
            radius=self.radius if self.smooth else 0,
            centre_weight=self.centre_weight,
            neighbour_weight=self.neighbour_weight,
            occlusion_check=self.occlusion_check,
        )


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
class FrameResult:
    """One frame's dense pose.

    Attributes:
        index: frame number from 0.
        image_rgb: (H, W, 3) uint8, the frame.
        result: persons with score >= the threshold, in the network's order.
        track_ids: (N,) int64, each person's track id (from 1, never reused).
    """

    index: int
    image_rgb: np.ndarray
    result: DensePoseResult
    track_ids: np.ndarray


@dataclass
class _Waiting:
    """A frame whose logits are in the smoother: what post-processing needs besides them."""

    image_rgb: np.ndarray
    detections: Detections
    batch: PreparedBatch


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    iterator = iter(frames)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _frame_of(output: DDPOutput, batch: PreparedBatch, b: int) -> tuple[Detections, PreparedBatch]:
    """Image b of a batch as a batch of one: its detections (image index 0) and batch rows."""
    detections = output.detections[output.detections.image_index == b]
    detections = dataclasses.replace(
        detections, image_index=torch.zeros_like(detections.image_index)
    )
    rows = slice(b, b + 1)
    single = PreparedBatch(
        images=batch.images[rows],
        image_sizes=batch.image_sizes[rows],
        original_sizes=batch.original_sizes[rows],
        scales=batch.scales[rows],
    )
    return detections, single


def _add_time(seconds: dict[str, float], stage: str, start: float) -> None:
    seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start


def iter_video(
    frames: Iterable[np.ndarray],
    predictor: Predictor,
    options: VideoOptions = VideoOptions(),
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
        for b, image in enumerate(chunk):
            detections, single = _frame_of(output, batch, b)
            waiting[pushed + b] = _Waiting(image, detections, single)
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
                output.iuv_logits,
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
    score_threshold: float,
    seconds: dict[str, float],
) -> Iterator[FrameResult]:
    """Post-process smoothed frames on their own detections, filter, track."""
    for smoothed in ready:
        frame = waiting.pop(smoothed.index)
        start = time.perf_counter()
        output = DDPOutput(
            detections=frame.detections,
            iuv_logits=smoothed.logits[None],
            active=smoothed.active[None],
            image_sizes=frame.batch.image_sizes,
        )
        with torch.inference_mode():
            result = predictor.postprocess(output, frame.batch)[0]
        keep = torch.nonzero(result.scores >= score_threshold).flatten().tolist()
        result = result.select(keep)
        _add_time(seconds, "postprocess", start)
        start = time.perf_counter()
        track_ids = tracker.update(result.masks.numpy())
        _add_time(seconds, "tracking", start)
        yield FrameResult(smoothed.index, frame.image_rgb, result, track_ids)


def instance_ids(result: DensePoseResult, track_ids: np.ndarray) -> np.ndarray:
    """(H, W) int32 map of track ids (0 = nobody); overlaps go to the higher score."""
    labels = np.zeros(result.masks.shape[-2:], dtype=np.int32)
    order = torch.sort(result.scores, descending=True, stable=True).indices.tolist()
    for i in reversed(order):
        labels[result.masks[i].numpy()] = track_ids[i]
    return labels


class _Outputs:
    """The three files of one video, written frame by frame."""

    def __init__(self, out_dir: Path, name: str, width: int, height: int, fps: float) -> None:
        self.width, self.height = width, height
        self.npz = FrameArrayWriter(
            out_dir / f"{name}.npz",
            {
                "parts": (np.dtype(np.uint8), (height, width)),
                "u": (np.dtype(np.float16), (height, width)),
                "v": (np.dtype(np.float16), (height, width)),
                "instances": (np.dtype(np.int32), (height, width)),
            },
        )
        self.persons: list[tuple[int, int, list[float], float]] = []
        self.parts_mp4 = H264Writer(
            out_dir / f"{name}.parts.mp4", width=width, height=height, fps=fps
        )
        self.viridis_mp4 = H264Writer(
            out_dir / f"{name}.viridis.mp4", width=width, height=height, fps=fps
        )

    def write(self, frame: FrameResult) -> None:
        if frame.image_rgb.shape != (self.height, self.width, 3):
            raise VideoError(
                f"frame {frame.index} is {frame.image_rgb.shape[1]}x{frame.image_rgb.shape[0]}, "
                f"the video {self.width}x{self.height}: changing frame sizes are not supported"
            )
        result = frame.result
        _, parts, uv = paste_owners(result)
        self.npz.append(
            {
                "parts": parts.numpy(),
                "u": uv[0].numpy().astype(np.float16),
                "v": uv[1].numpy().astype(np.float16),
                "instances": instance_ids(result, frame.track_ids),
            }
        )
        for track_id, box, score in zip(
            frame.track_ids.tolist(),
            result.boxes_xyxy.tolist(),
            result.scores.tolist(),
            strict=True,
        ):
            self.persons.append((frame.index, track_id, box, score))
        self.parts_mp4.write(draw_overlay(frame.image_rgb, result))
        self.viridis_mp4.write(viridis_parts(parts.numpy()))

    def close(self, fps: float, smoothed: bool) -> None:
        self.parts_mp4.close()
        self.viridis_mp4.close()
        boxes = np.array([p[2] for p in self.persons], dtype=np.float32).reshape(-1, 4)
        self.npz.close(
            {
                "person_frame": np.array([p[0] for p in self.persons], dtype=np.int32),
                "person_track_id": np.array([p[1] for p in self.persons], dtype=np.int32),
                "person_box_xyxy": boxes,
                "person_score": np.array([p[3] for p in self.persons], dtype=np.float32),
                "fps": np.array(fps, dtype=np.float64),
                "smoothed": np.array(smoothed),
            }
        )

    def discard(self) -> None:
        for writer in (self.parts_mp4, self.viridis_mp4):
            try:
                writer.close()
            finally:
                writer.path.unlink(missing_ok=True)
        self.npz.discard_parts()
        self.npz.path.unlink(missing_ok=True)


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
    options: VideoOptions = VideoOptions(),
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
    outputs = _Outputs(out_dir, source.stem, info.width, info.height, info.fps)
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
        tolerated = max(1, info.frames // 50)
        if written == 0 or written < info.frames - tolerated:
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
        npz=outputs.npz.path,
        parts_mp4=outputs.parts_mp4.path,
        viridis_mp4=outputs.viridis_mp4.path,
        frames=written,
        fps=info.fps,
        width=info.width,
        height=info.height,
        seconds=seconds,
    )
