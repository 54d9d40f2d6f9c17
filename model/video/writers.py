"""The three files of one video, written frame by frame: ``<name>.npz`` (the NPZ layout of
``model.outputs.npz``: merged charts, instance maps, the person table with track ids),
``<name>.parts.mp4`` (``draw_overlay`` over the frame) and ``<name>.viridis.mp4``
(``viridis_parts``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.outputs.encoding import frame_arrays
from model.outputs.npz import NpzWriter
from model.outputs.visualize import draw_overlay
from model.video.errors import VideoError
from model.video.io import H264Writer
from model.video.render import viridis_parts
from model.video.results import FrameResult


class VideoWriters:
    """The NPZ and the two MP4s of one video of (``height``, ``width``) frames: ``write`` each
    frame in order, then ``close``, or ``discard`` to remove everything written so far."""

    def __init__(self, out_dir: Path, name: str, width: int, height: int, fps: float) -> None:
        self.width, self.height = width, height
        self.npz_path = out_dir / f"{name}.npz"
        self.npz = NpzWriter(height=height, width=width, spool_dir=out_dir)
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
        arrays = frame_arrays(frame.result, frame.track_ids)
        self.npz.append(arrays)
        self.parts_mp4.write(draw_overlay(frame.image_rgb, frame.result))
        self.viridis_mp4.write(viridis_parts(arrays.parts))

    def close(self, fps: float, smoothed: bool) -> None:
        """Finish the MP4s and write the NPZ, with ``fps`` and ``smoothed``."""
        self.parts_mp4.close()
        self.viridis_mp4.close()
        extra = {"fps": np.array(fps, dtype=np.float64), "smoothed": np.array(smoothed)}
        with self.npz_path.open("wb") as file:
            self.npz.finish(file, extra)

    def discard(self) -> None:
        """Close and remove every file, finished or not."""
        for writer in (self.parts_mp4, self.viridis_mp4):
            try:
                writer.close()
            finally:
                writer.path.unlink(missing_ok=True)
        self.npz.discard()
        self.npz_path.unlink(missing_ok=True)
