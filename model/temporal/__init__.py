"""Temporal smoothing of the global IUV logits across video frames (paper section 4).

``flow``: the ``FlowEstimator`` interface and OpenCV DIS; ``raft``: torchvision RAFT;
``estimators``: the builder choosing one by name;
``warp``: grid conventions, backward warping, flow resampling and chaining; ``smoothing``:
eq. 5-6 over a sliding window of a frame stream.
"""

from model.temporal.estimators import build_flow_estimator
from model.temporal.flow import DISFlow, FlowEstimator, FlowName
from model.temporal.smoothing import (
    SmoothedFrame,
    SmoothingConfig,
    TemporalSmoother,
    weighted_vote,
)
from model.temporal.warp import chain_flows, resample_flow, warp_logits

__all__ = [
    "DISFlow",
    "FlowEstimator",
    "FlowName",
    "SmoothedFrame",
    "SmoothingConfig",
    "TemporalSmoother",
    "build_flow_estimator",
    "chain_flows",
    "resample_flow",
    "warp_logits",
    "weighted_vote",
]
