"""The service's Prometheus ``/metrics`` as snapshots, and what changed between two of them.

A snapshot maps (sample name, sorted label pairs) to the sample's value, e.g.
``("ddp_queue_wait_seconds_sum", ())`` or
``("ddp_requests_total", (("endpoint", "/densepose"), ("status", "2xx")))``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Snapshot = dict[tuple[str, Labels], float]


def parse(text: str) -> Snapshot:
    """Prometheus text exposition -> snapshot."""
    snapshot: Snapshot = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            snapshot[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return snapshot


def scrape(url: str, *, timeout_s: float = 10.0) -> Snapshot:
    """The snapshot of ``url``'s ``/metrics``."""
    response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=timeout_s)
    response.raise_for_status()
    return parse(response.text)


def total(snapshot: Snapshot, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in snapshot.items() if n == name and wanted <= set(ls))


def delta(before: Snapshot, after: Snapshot, name: str, **labels: str) -> float:
    """How much the (summed) samples called ``name`` grew from ``before`` to ``after``."""
    return total(after, name, **labels) - total(before, name, **labels)


def share_within(
    before: Snapshot, after: Snapshot, histogram: str, le: float, **labels: str
) -> float:
    """Of the observations ``histogram`` (with ``labels``) gained between the snapshots, the
    share at most ``le`` (one of its bucket bounds); NaN when it gained none."""
    count = delta(before, after, f"{histogram}_count", **labels)
    within = delta(before, after, f"{histogram}_bucket", le=f"{le}", **labels)
    return within / count if count else float("nan")


def label_values(snapshot: Snapshot, name: str, label: str) -> set[str]:
    return {dict(ls)[label] for (n, ls) in snapshot if n == name and label in dict(ls)}


@dataclass(frozen=True)
class ServerSplit:
    """Where a request's time went on the server between two snapshots (means, seconds).

    Attributes:
        requests: ``POST /densepose`` answers counted by the latency histogram.
        latency_s: mean server-side latency (arrival to response).
        queue_s: mean wait in the queue before the request's batch started.
        compute_s: mean duration of the forward pass a request ran in (preprocess, forward,
            post-process of its whole batch: each request waits for all of it).
        other_s: the rest (decoding, the batch window, encoding, the framework).
        batches: forward passes; mean_batch_size: requests per pass.
        rejected: refusals by reason (``queue_full``, ``deadline``, ...).
    """

    requests: float
    latency_s: float
    queue_s: float
    compute_s: float
    other_s: float
    batches: float
    mean_batch_size: float
    rejected: Mapping[str, float]


def server_split(before: Snapshot, after: Snapshot, endpoint: str = "/densepose") -> ServerSplit:
    """Diff the latency, queue-wait and forward-time histograms between two snapshots."""

    def mean(sum_: float, count: float) -> float:
        return sum_ / count if count else 0.0

    requests = delta(before, after, "ddp_request_duration_seconds_count", endpoint=endpoint)
    latency = mean(
        delta(before, after, "ddp_request_duration_seconds_sum", endpoint=endpoint), requests
    )
    queue = mean(
        delta(before, after, "ddp_queue_wait_seconds_sum"),
        delta(before, after, "ddp_queue_wait_seconds_count"),
    )
    forward = "ddp_model_forward_seconds"
    weighted = seconds = batches = 0.0
    for size in label_values(after, f"{forward}_count", "batch_size"):
        count = delta(before, after, f"{forward}_count", batch_size=size)
        spent = delta(before, after, f"{forward}_sum", batch_size=size)
        weighted += int(size) * spent  # each of the batch's requests waits for all of it
        seconds += int(size) * count
        batches += count
    compute = mean(weighted, seconds)
    reasons = label_values(after, "ddp_rejected_requests_total", "reason")
    return ServerSplit(
        requests=requests,
        latency_s=latency,
        queue_s=queue,
        compute_s=compute,
        other_s=max(0.0, latency - queue - compute),
        batches=batches,
        mean_batch_size=mean(seconds, batches),
        rejected={
            r: delta(before, after, "ddp_rejected_requests_total", reason=r) for r in reasons
        },
    )
