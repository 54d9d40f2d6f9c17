"""Video files in and out: probe, RGB frame iterator (OpenCV), whole-packet count and H.264
MP4 writer (PyAV).

Decoding uses OpenCV's FFmpeg backend (a core dependency). Writing needs PyAV (extra
``video``): its wheels bundle FFmpeg with libx264, and the MP4s are H.264 in yuv420p with the
``faststart`` layout (index first), which every browser plays. OpenCV's own writer offers
only MPEG-4 part 2 (``mp4v``), which browsers do not play.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from model.video.errors import VideoError

CONTAINERS = ("mp4", "mov", "webm", "avi")
"""The containers read as videos (``container_of``); anything else, a still image above all, is
refused even where OpenCV would open it as a one-frame clip."""
_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip")
"""First atoms of QuickTime files written without an ``ftyp`` atom."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: frame count (OpenCV's; an estimate from duration × fps for
    some containers, e.g. Matroska), frames per second, frame size in pixels."""

    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    @property
    def fewest_frames(self) -> int:
        """The fewest frames a complete file yields: the count less 2 % (at least one), room
        for containers whose count is an estimate; fewer means truncated or corrupt."""
        return self.frames - max(1, self.frames // 50)


def _open(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise VideoError(
            f"{path.name}: cannot be read as a video (not a video file, truncated, or no frames)"
        )
    return capture


def container_of(head: bytes) -> str | None:
    """``mp4``, ``mov``, ``webm`` (also Matroska) or ``avi`` from a file's first 12 bytes; None
    for anything else."""
    if head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head[4:8] in _QUICKTIME_ATOMS:
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def probe(path: str | Path) -> VideoInfo:
    """Frame count, fps and size of a video; ``VideoError`` when it is not one of
    ``CONTAINERS`` (a still image, say), or has no frames or no usable frame rate."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            head = file.read(12)
    except OSError as error:
        raise VideoError(f"{path.name}: cannot be read ({error.strerror})") from error
    if container_of(head) is None:
        raise VideoError(
            f"{path.name}: not a video file: expected {', '.join(CONTAINERS)} "
            "(a still image is refused)"
        )
    capture = _open(path)
    try:
        frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = capture.get(cv2.CAP_PROP_FPS)
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    if not frames >= 1:  # also NaN
        raise VideoError(f"{path.name}: no frames (frame count {frames:g})")
    if not 0 < fps < 1000:
        raise VideoError(f"{path.name}: no usable frame rate ({fps:g} fps)")
    if width < 1 or height < 1:
        raise VideoError(f"{path.name}: no frame size ({width}x{height})")
    return VideoInfo(frames=int(frames), fps=float(fps), width=width, height=height)


def _pyav(purpose: str) -> Any:
    """The ``av`` module; RuntimeError saying how to install it where it is missing."""
    try:
        import av
    except ImportError:
        raise RuntimeError(
            f"{purpose} needs PyAV: pip install -e '.[video]' (or pip install av)"
        ) from None
    return av


def whole_packets(path: str | Path) -> int:
    """How many packets of the first video stream the file holds whole, read without decoding
    (a pass over the file that costs little next to decoding it). A file cut short has fewer
    than ``probe``'s frame count, or a packet cut short. Needs PyAV (extra ``video``).

    Raises:
        VideoError: the file cannot be demuxed, has no video stream, or a packet is cut short.
    """
    av = _pyav("checking a video's packets")
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path.name}: no video stream")
            count = 0
            for packet in container.demux(container.streams.video[0]):
                if packet.is_corrupt:
                    raise VideoError(f"{path.name}: truncated: packet {count + 1} is cut short")
                count += packet.size > 0  # the demuxer ends with an empty flush packet
    except av.FFmpegError as error:
        raise VideoError(f"{path.name}: cannot be demuxed ({error})") from error
    return count


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """The frames of a video in order, each (H, W, 3) uint8 RGB; stops where decoding stops
    (compare the count with ``probe`` to detect truncation)."""
    capture = _open(Path(path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def frame_rate(fps: float) -> Fraction:
    """fps as the nearest fraction with a denominator up to 1001 (29.97 -> 30000/1001)."""
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return Fraction(fps).limit_denominator(1001)


class H264Writer:
    """Writes (H, W, 3) uint8 RGB frames to an H.264 MP4 (libx264, yuv420p, ``faststart``).

    yuv420p needs even sides: an odd width or height is padded by one edge-repeated column or
    row (the only case where the video is not exactly the frames' size). ``crf`` is x264's
    quality (0 lossless .. 51; 18 looks lossless on part colours), ``preset`` its speed.
    Use as a context manager or call ``close``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        width: int,
        height: int,
        fps: float,
        crf: int = 18,
        preset: str = "fast",
    ) -> None:
        av = _pyav("writing MP4")
        if width < 1 or height < 1:
            raise ValueError(f"need a positive frame size, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height = width, height
        self.frames = 0
        self._av: Any = av
        self._container: Any = av.open(str(self.path), "w", options={"movflags": "+faststart"})
        rate = frame_rate(fps)
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.options = {"crf": str(crf), "preset": preset}
        self._stream = stream

    def write(self, frame_rgb: np.ndarray) -> None:
        if frame_rgb.shape != (self.height, self.width, 3) or frame_rgb.dtype != np.uint8:
            raise ValueError(
                f"expected a ({self.height}, {self.width}, 3) uint8 frame, "
                f"got {frame_rgb.shape} {frame_rgb.dtype}"
            )
        padding = ((0, self.height % 2), (0, self.width % 2), (0, 0))
        image = np.pad(frame_rgb, padding, mode="edge") if any(p[1] for p in padding) else frame_rgb
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent)."""
        if self._container is None:
            return
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
