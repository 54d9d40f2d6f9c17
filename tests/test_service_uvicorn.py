"""The service as a real uvicorn process: concurrency, refusals, deadlines, disconnects,
graceful shutdown, and a real Prometheus server scraping it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import pytest

from model.outputs.npz import read_npz
from service.client import DensePoseClient
from service.testing import ServerProcess, encode, free_port, random_image, tiny_checkpoint

SHAPES = [(96, 128)] * 5 + [(80, 80)] * 3
IMAGES = [encode(random_image(seed, *shape)) for seed, shape in enumerate(SHAPES)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors")


def server(weights: Path, tmp_path: Path, **settings: object) -> ServerProcess:
    values = {"weights": str(weights), "device": "cpu", "torch_threads": "1"}
    values |= {name: str(value) for name, value in settings.items()}
    return ServerProcess(values, log_path=tmp_path / "server.log")


def post(url: str, data: bytes, params: str = "", timeout_s: float = 60) -> httpx.Response:
    files = {"file": ("x", data, "image/png")}
    return httpx.post(f"{url}/densepose{params}", files=files, timeout=timeout_s)


def post_concurrently(url: str, images: list[bytes], params: str = "") -> list[httpx.Response]:
    with ThreadPoolExecutor(len(images)) as pool:
        return list(pool.map(lambda data: post(url, data, params), images))


def metric(url: str, name: str, **labels: str) -> float:
    """Sum over the samples of ``name`` in ``/metrics`` carrying ``labels`` (0 if none)."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    total = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.split("{")[0] == name and all(label in sample for label in wanted):
            total += float(value)
    return total


def until(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    """Poll ``condition`` until it holds (``timeout_s`` is only a safety net)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.02)


def test_concurrent_clients_get_their_own_results(weights: Path, tmp_path: Path) -> None:
    with server(weights, tmp_path, max_batch_size=4, max_wait_ms=200) as service:
        with DensePoseClient(service.url) as client:
            alone = [client.predict_arrays(image) for image in IMAGES]
        assert metric(service.url, "ddp_batch_size_count") == len(IMAGES)
        responses = post_concurrently(service.url, IMAGES, "?format=npz")
        together = [read_npz(response.content) for response in responses]
        batches = metric(service.url, "ddp_batch_size_count") - len(IMAGES)
        assert batches < len(IMAGES), "concurrent requests were not batched"
    for one, other in zip(alone, together, strict=True):
        assert one["instances"].shape == other["instances"].shape
        np.testing.assert_allclose(one["person_score"], other["person_score"], atol=1e-5)
        np.testing.assert_allclose(one["person_box_xyxy"], other["person_box_xyxy"], atol=1e-3)
        assert (one["instances"] == other["instances"]).mean() > 0.999
        assert (one["parts"] == other["parts"]).mean() > 0.999
        np.testing.assert_allclose(one["u"], other["u"], atol=1e-3)
        np.testing.assert_allclose(one["v"], other["v"], atol=1e-3)


def test_full_queue_answers_503_with_retry_after(weights: Path, tmp_path: Path) -> None:
    with server(weights, tmp_path, max_batch_size=1, max_wait_ms=0, queue_size=1) as service:
        responses = post_concurrently(service.url, IMAGES * 2)
        refused = [r for r in responses if r.status_code == 503]
        assert refused and all(int(r.headers["retry-after"]) >= 1 for r in refused)
        assert all(r.json()["error"]["code"] == "queue_full" for r in refused)
        assert {r.status_code for r in responses} == {200, 503}
        assert metric(service.url, "ddp_rejected_requests_total", reason="queue_full") == len(
            refused
        )
        assert post(service.url, IMAGES[0]).status_code == 200


def test_deadline_answers_504_and_skips_the_work(weights: Path, tmp_path: Path) -> None:
    # A deadline no forward pass can meet on any machine: every request is late.
    with server(
        weights, tmp_path, max_batch_size=1, max_wait_ms=0, request_timeout_s=1e-6
    ) as service:
        responses = post_concurrently(service.url, IMAGES * 2)
        late = [r for r in responses if r.status_code == 504]
        assert late and all(r.json()["error"]["code"] == "deadline" for r in late)
        assert {r.status_code for r in responses} == {504}
        # expired before the batcher took them from the queue: not computed
        assert metric(service.url, "ddp_batch_size_sum") < len(responses) / 2
        rejected = metric(service.url, "ddp_rejected_requests_total", reason="deadline")
        assert rejected == len(late)


def test_disconnected_client_is_not_computed(weights: Path, tmp_path: Path) -> None:
    with server(weights, tmp_path, max_batch_size=1, max_wait_ms=0) as service:
        # Clients that wait half as long as the fastest answer this server gives: none can
        # be answered in time, on a fast machine or a slow one (a fixed wait would be both).
        patience_s = _fastest_answer_s(service.url) / 2
        answered = partial(metric, service.url, "ddp_requests_total", endpoint="/densepose")
        computed = partial(metric, service.url, "ddp_batch_size_sum")
        answered_before, computed_before = answered(), computed()
        with ThreadPoolExecutor(8) as pool:
            slow = pool.submit(post_concurrently, service.url, IMAGES[:2])
            time.sleep(0.02)
            impatient = list(pool.map(lambda d: _give_up(service.url, d, patience_s), IMAGES * 2))
            assert all(status == 200 for status in (r.status_code for r in slow.result()))
        assert all(gave_up for gave_up in impatient)
        requests = 2 + len(impatient)
        until(lambda: answered() - answered_before >= requests)  # the server is done with all
        dropped = metric(service.url, "ddp_rejected_requests_total", reason="client_disconnected")
        assert dropped > 0
        assert computed() - computed_before < requests  # the dropped were not all computed
        assert post(service.url, IMAGES[0]).status_code == 200


def _fastest_answer_s(url: str, tries: int = 4) -> float:
    """Seconds of the fastest of ``tries`` answered requests, one at a time."""
    times = []
    for data in IMAGES[:tries]:
        start = time.perf_counter()
        assert post(url, data).status_code == 200
        times.append(time.perf_counter() - start)
    return min(times)


def _give_up(url: str, data: bytes, patience_s: float) -> bool:
    """Whether the client gave up waiting (``patience_s`` for each of connect, send and
    the answer) and closed the connection."""
    try:
        post(url, data, timeout_s=patience_s)
    except httpx.TimeoutException:
        return True
    return False


def test_graceful_shutdown_finishes_accepted_requests(weights: Path, tmp_path: Path) -> None:
    service = server(weights, tmp_path, max_batch_size=1, max_wait_ms=0)
    with service, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(post_concurrently, service.url, IMAGES)

        def accepted() -> float:  # started (their queue wait observed) or waiting
            started = metric(service.url, "ddp_queue_wait_seconds_count")
            return started + metric(service.url, "ddp_queue_depth")

        until(lambda: accepted() >= len(IMAGES))
        service.terminate()
        responses = pending.result()
        assert service.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert [r.status_code for r in responses] == [200] * len(IMAGES)
    assert "Traceback" not in service.log


def test_ddp_serve_exits_0_after_draining_on_sigterm(weights: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "service.cli", "serve", "--weights", str(weights)]
    command += ["--device", "cpu", "--host", "127.0.0.1", "--port", url.rpartition(":")[2]]
    env = os.environ | {"DDP_TORCH_THREADS": "1", "DDP_MAX_BATCH_SIZE": "1"}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        until(lambda: process.poll() is not None or _ready(url))
        assert process.poll() is None, log_path.read_text()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(post_concurrently, url, IMAGES[:3])
            accepted = partial(metric, url, "ddp_queue_wait_seconds_count")
            until(lambda: accepted() + metric(url, "ddp_queue_depth") >= 3)
            process.send_signal(signal.SIGTERM)
            assert [r.status_code for r in pending.result()] == [200] * 3
        assert process.wait(60) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in log_path.read_text()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


PROMETHEUS = shutil.which("prometheus")
QUERY = (
    "histogram_quantile(0.9, sum by (le, persons) "
    '(rate(ddp_request_duration_seconds_bucket{endpoint="/densepose"}[1m])))'
)


@pytest.mark.skipif(PROMETHEUS is None, reason="no prometheus binary (apt-get install prometheus)")
def test_prometheus_scrapes_latency_by_person_bucket(weights: Path, tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    with server(weights, tmp_path, max_wait_ms=0) as service:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: ddp\n    static_configs: [{{targets: ['127.0.0.1:{service.port}']}}]\n"
        )
        command = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with open(tmp_path / "prometheus.log", "wb") as log:
            prometheus = subprocess.Popen(command, stdout=log, stderr=log)
        try:
            api = f"http://127.0.0.1:{port}/api/v1/query"
            assert _poll(api, 'up{job="ddp"}', lambda found: found == {"": 1.0}), "no scrape"
            buckets = _poll(api, QUERY, lambda found: _all_finite(found, 4), traffic=service.url)
        finally:
            prometheus.terminate()
            prometheus.wait(30)
    assert buckets.keys() >= {"0", "1", "2", "3-4"}
    assert all(0 < value < 60 for value in buckets.values()), buckets


def _all_finite(found: dict[str, float], count: int) -> bool:
    return len(found) >= count and all(np.isfinite(value) for value in found.values())


def _poll(
    api: str,
    query: str,
    done: Callable[[dict[str, float]], bool],
    *,
    traffic: str | None = None,
    timeout_s: float = 40.0,
) -> dict[str, float]:
    """``persons`` label -> value of ``query``, polled until ``done``; meanwhile requests with
    0, 1, 2 and 3 persons go to ``traffic`` (rate() needs scrapes that saw them increase)."""
    deadline = time.monotonic() + timeout_s
    found: dict[str, float] = {}
    while time.monotonic() < deadline and not done(found):
        if traffic is not None:
            for params in ("?score_threshold=1", "?max_persons=1", "?max_persons=2", ""):
                assert post(traffic, IMAGES[0], params).status_code == 200
        time.sleep(0.5)
        try:
            result = httpx.get(api, params={"query": query}, timeout=5).json()["data"]["result"]
        except httpx.TransportError:
            result = []
        found = {s["metric"].get("persons", ""): float(s["value"][1]) for s in result}
    return found
