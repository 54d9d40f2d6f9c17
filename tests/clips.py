"""Tiny video clips for the service's tests, made in memory: the same few frames of moving
noise as an H.264 MP4 (the project's own writer), an ``mp4v`` MP4 and an ``MJPG`` AVI
(OpenCV)."""

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


def clips(*, frames: int = 3, height: int = 48, width: int = 64, fps: float = 10.0) -> list[bytes]:
    """The bytes of the H.264 MP4, the ``mp4v`` MP4 and the ``MJPG`` AVI, in that order."""
    images = moving_noise(frames, height, width)
    with TemporaryDirectory() as directory:
        h264 = Path(directory) / "h264.mp4"
        with H264Writer(h264, width=width, height=height, fps=fps) as h264_writer:
            for image in images:
                h264_writer.write(image)
        written = [h264.read_bytes()]
        for name, fourcc in (("mp4v.mp4", "mp4v"), ("mjpg.avi", "MJPG")):
            path = Path(directory) / name
            writer = cv2.VideoWriter(
                str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (width, height)
            )
            assert writer.isOpened(), f"OpenCV cannot write {fourcc}"
            for image in images:
                writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            writer.release()
            written.append(path.read_bytes())
    return written
