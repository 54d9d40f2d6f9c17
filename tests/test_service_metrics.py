"""``ServiceMetrics``' registry: the service's own series plus the standard process, platform
and GC series of prometheus_client's default registry, one registry per app."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.metrics import ServiceMetrics
from service.settings import Settings

STANDARD_FAMILIES = (
    "process_resident_memory_bytes",
    "process_cpu_seconds",
    "process_open_fds",
    "python_info",
    "python_gc_objects_collected",
)


def families(text: str) -> dict[str, float]:
    """Family name -> value of its first sample, from the Prometheus text format."""
    return {f.name: f.samples[0].value for f in text_string_to_metric_families(text) if f.samples}


def test_metrics_endpoint_shows_the_process_series() -> None:
    app = create_app(Settings(untrained_config="tiny", warmup=False))
    with TestClient(app) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    exported = families(response.text)
    for name in STANDARD_FAMILIES:
        assert name in exported, name
    assert exported["process_resident_memory_bytes"] > 10 * 2**20  # a Python process with torch


def test_two_apps_have_their_own_registries_with_the_standard_series() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()
    first.rejections.labels(reason="queue_full").inc()
    first_text = generate_latest(first.registry).decode()
    second_text = generate_latest(second.registry).decode()
    for text in (first_text, second_text):
        assert "process_resident_memory_bytes" in text
    assert 'ddp_rejected_requests_total{reason="queue_full"} 1.0' in first_text
    assert 'reason="queue_full"' not in second_text
