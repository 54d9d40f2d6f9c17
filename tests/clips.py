"""Tiny video clips for the service's tests: moving noise as an H.264 MP4 (the project's own
writer, ``faststart``: its index first, as phones and streaming tools write), an ``mp4v`` MP4
or an ``MJPG`` AVI (OpenCV)."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

import cv2
import numpy as np

from model.video.io import H264Writer
from service.testing import random_image


def moving_noise(frames: int, height: int, width: int) -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB frames: one noise image sliding left by a pixel a frame."""
    base = random_image(0, height, width + frames)
    return [np.ascontiguousarray(base[:, i : i + width]) for i in range(frames)]


def write_h264(path: Path, *, frames: int, height: int, width: int, fps: float) -> bytes:
    """Moving noise as an H.264 MP4 at ``path``; its bytes."""
    with H264Writer(path, width=width, height=height, fps=fps) as writer:
        for image in moving_noise(frames, height, width):
            writer.write(image)
    return path.read_bytes()


def write_opencv(
    path: Path, *, fourcc: str, frames: int, height: int, width: int, fps: float
) -> bytes:
    """Moving noise through OpenCV's writer (``mp4v`` MP4, ``MJPG`` AVI) at ``path``; its
    bytes."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc}"
    for image in moving_noise(frames, height, width):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


def clips(*, frames: int = 3, height: int = 48, width: int = 64, fps: float = 10.0) -> list[bytes]:
    """The bytes of the H.264 MP4, the ``mp4v`` MP4 and the ``MJPG`` AVI, in that order."""
    size = {"frames": frames, "height": height, "width": width, "fps": fps}
    with TemporaryDirectory() as directory:
        folder = Path(directory)
        return [
            write_h264(folder / "h264.mp4", **size),
            write_opencv(folder / "mp4v.mp4", fourcc="mp4v", **size),
            write_opencv(folder / "mjpg.avi", fourcc="MJPG", **size),
        ]
