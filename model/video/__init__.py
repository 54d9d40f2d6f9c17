"""Video: file I/O (``io``), the options (``options``), the streamed dense-pose pipeline with
temporal smoothing (``pipeline``) and its per-frame results (``results``), person tracking
(``tracking``), the output files (``writers``: the NPZ of ``model.outputs.npz`` and the
visualisation frames, ``render``) and the inter-frame stability metrics of the paper's Table 4
(``stability``)."""

from model.video.errors import VideoCancelled, VideoError
from model.video.io import VideoInfo, probe
from model.video.options import VideoOptions
from model.video.pipeline import VideoOutputs, iter_video, process_video
from model.video.results import FrameResult

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
