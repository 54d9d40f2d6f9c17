"""Prometheus metrics of one app, in its own registry (two apps in a process never collide),
with the standard ``process_*``, ``python_info`` and ``python_gc_*`` series that
prometheus_client's default registry would have had.

Labels stay low-cardinality: endpoint = route template, persons = one of ``PERSON_BUCKETS``,
status = status class, batch size <= ``max_batch_size``, reason = a fixed set of codes,
state = a video job state, stage = a video pipeline stage.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

PERSON_BUCKETS = ((0, "0"), (1, "1"), (2, "2"), (4, "3-4"), (8, "5-8"), (16, "9-16"))
"""(largest count, label) of the person-count buckets; above the last one: ``17+``."""
NO_PERSONS_LABEL = "none"
"""``persons`` label of requests that produced no result (errors, health checks)."""
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
    10.0, 30.0,
)  # fmt: skip
VIDEO_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)


def person_bucket(count: int) -> str:
    """0, 1, 2, 3-4, 5-8, 9-16 or 17+."""
    return next((label for top, label in PERSON_BUCKETS if count <= top), "17+")


class ServiceMetrics:
    """Every metric the service exports; ``registry`` is what ``/metrics`` renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.request_latency = Histogram(
            "ddp_request_duration_seconds",
            "Time from request arrival to response, by endpoint and persons found.",
            ["endpoint", "persons"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "ddp_requests_total",
            "Requests answered, by endpoint and status class (2xx, 4xx, 5xx).",
            ["endpoint", "status"],
            registry=r,
        )
        self.rejections = Counter(
            "ddp_rejected_requests_total",
            "Requests refused or dropped before or instead of computing, by reason.",
            ["reason"],
            registry=r,
        )
        self.forward_time = Histogram(
            "ddp_model_forward_seconds",
            "Model time of one batch (preprocess, forward, post-process), by batch size.",
            ["batch_size"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "ddp_queue_wait_seconds",
            "Time a request waited in the queue before its batch started.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "ddp_queue_depth", "Requests waiting for the model now.", registry=r
        )
        self.queued_pixels = Gauge(
            "ddp_queue_pixels",
            "Image pixels of the requests waiting for the model now.",
            registry=r,
        )
        self.batch_size = Histogram(
            "ddp_batch_size",
            "Images per model forward pass.",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
            registry=r,
        )
        self.persons = Histogram(
            "ddp_persons_per_image",
            "Persons returned per image.",
            buckets=(0, 1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.model_info = Info("ddp_model", "The model this process serves.", registry=r)
        self.video_jobs = Counter(
            "ddp_video_jobs_total",
            "Video jobs entering each state (queued = accepted).",
            ["state"],
            registry=r,
        )
        self.video_jobs_running = Gauge(
            "ddp_video_jobs_running", "Video jobs being processed now.", registry=r
        )
        self.video_jobs_queued = Gauge(
            "ddp_video_jobs_queued", "Video jobs waiting for a free slot now.", registry=r
        )
        self.video_frames = Counter(
            "ddp_video_frames_total", "Video frames processed, all jobs together.", registry=r
        )
        self.video_seconds = Histogram(
            "ddp_video_processing_seconds",
            "Duration of each completed video job, by pipeline stage (total: the whole run).",
            ["stage"],
            buckets=VIDEO_BUCKETS,
            registry=r,
        )

    def track_queue_depth(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(lambda: float(depth()))

    def track_queued_cost(self, cost: Callable[[], int]) -> None:
        self.queued_pixels.set_function(lambda: float(cost()))

    def track_video_jobs(self, *, running: Callable[[], int], queued: Callable[[], int]) -> None:
        self.video_jobs_running.set_function(lambda: float(running()))
        self.video_jobs_queued.set_function(lambda: float(queued()))
