"""The three files of one video, written frame by frame: ``<name>.npz`` (the pasted charts,
the map of track ids and the person table; keys in docs/video.md "Outputs"),
``<name>.parts.mp4`` (``draw_overlay`` over the frame) and ``<name>.viridis.mp4``
(``viridis_parts``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.outputs.encoding import mask_owners, paste_owners
from model.outputs.visualize import draw_overlay
from model.structures import DensePoseResult
from model.video.errors import VideoError
from model.video.io import H264Writer
from model.video.npz import FrameArrayWriter
from model.video.render import viridis_parts
from model.video.results import FrameResult


def instance_ids(result: DensePoseResult, track_ids: np.ndarray) -> np.ndarray:
    """(H, W) int32 map of track ids (0 = nobody), each pixel owned as in ``mask_owners``."""
    owner = mask_owners(result).numpy()
    ids = np.asarray(track_ids, dtype=np.int32)
    return np.where(owner >= 0, ids[np.maximum(owner, 0)] if len(ids) else 0, 0).astype(np.int32)


class VideoWriters:
    """The NPZ and the two MP4s of one video of (``height``, ``width``) frames: ``write`` each
    frame in order, then ``close``, or ``discard`` to remove everything written so far."""

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
        """(frame, track id, box xyxy, score) of every person written."""
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
        """Finish the MP4s and write the NPZ with the person table, ``fps`` and ``smoothed``."""
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
        """Close and remove every file, finished or not."""
        for writer in (self.parts_mp4, self.viridis_mp4):
            try:
                writer.close()
            finally:
                writer.path.unlink(missing_ok=True)
        self.npz.discard_parts()
        self.npz.path.unlink(missing_ok=True)
