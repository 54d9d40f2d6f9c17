"""Video: file I/O (``io``), the streamed dense-pose pipeline with temporal smoothing
(``pipeline``), person tracking (``tracking``), visualisation frames (``render``), streamed NPZ
(``npz``) and the inter-frame stability metrics of the paper's Table 4 (``stability``)."""

from model.video.errors import VideoCancelled, VideoError
from model.video.io import VideoInfo, probe
from model.video.pipeline import (
    FrameResult,
    VideoOptions,
    VideoOutputs,
    iter_video,
    process_video,
)

__all__ = [
    "FrameResult",
    "VideoCancelled",
    "VideoError",
    "VideoInfo",
    "VideoOptions",
    "VideoOutputs",
    "iter_video",
    "probe",
    "process_video",
]
