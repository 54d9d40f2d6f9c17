"""Helpers shared by the service's tests and benchmarks: a tiny checkpoint, test images, the
service running as a real uvicorn process on a free loopback port, a ``ddp worker`` process,
and a check of the video jobs' files."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import httpx
import numpy as np
from PIL import Image

from model.checkpoint import random_checkpoint
from model.config import tiny_config
from model.inference.predictor import Predictor
from model.structures import DensePoseResult
from service.jobs.backend import open_backend
from service.settings import Settings


def tiny_checkpoint(path: Path, *, persons: bool = True, seed: int = 0) -> Path:
    """:func:`random_checkpoint` of the ``tiny`` config."""
    return random_checkpoint(path, tiny_config(), persons=persons, seed=seed)


def random_image(seed: int, height: int = 96, width: int = 128) -> np.ndarray:
    """(H, W, 3) uint8 RGB noise with a few flat rectangles (PNG-compressible)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
        image[y : y + height // 3, x : x + width // 3] = rng.integers(0, 256, 3)
    return image


def encode(image: np.ndarray, image_format: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, image_format, **params)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def bomb_png(width: int, height: int) -> bytes:
    """A few dozen bytes declaring ``width × height`` 8-bit RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


class HeldPredictor:
    """A stand-in for a ``Predictor`` whose every call waits until ``release`` is set, then
    runs the wrapped one: keeps the model busy and the batcher's queue filled for as long as
    a test needs, without timing. ``calls`` counts the batches that entered it."""

    def __init__(self, predictor: Predictor, *, safety_s: float = 60.0) -> None:
        self.predictor = predictor
        self.device = predictor.device
        self.release = threading.Event()
        self.calls = 0
        self._safety_s = safety_s

    def __call__(self, images_rgb: list[np.ndarray]) -> list[DensePoseResult]:
        self.calls += 1
        assert self.release.wait(self._safety_s), "the test never released the model"
        return self.predictor(images_rgb)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m uvicorn --factory service.app:create_app`` with ``DDP_*`` settings and the
    connection limits of ``service.connections`` (as ``ddp serve``), on a free loopback
    port; ``with`` waits until ``/readyz`` and stops it (SIGTERM) at the end."""

    def __init__(
        self, settings: dict[str, str], *, log_path: Path, ready_timeout_s: float = 120.0
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = os.environ | {f"DDP_{k.upper()}": v for k, v in settings.items()}
        self._log_path = log_path
        self._ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        command = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app"]
        command += ["--http", "service.connections:GuardedH11Protocol"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        command += ["--timeout-graceful-shutdown", "30"]
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(command, env=self._env, stdout=log, stderr=log)
        self._wait_ready()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def log(self) -> str:
        return self._log_path.read_text(errors="replace")

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._ready_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited with {self._process.returncode}:\n{self.log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"server not ready in {self._ready_timeout_s:g} s:\n{self.log}")

    def terminate(self) -> None:
        """Send SIGTERM (graceful shutdown) without waiting."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait; the exit code (SIGKILL after the timeout)."""
        if self._process is None:
            return 0
        self.terminate()
        try:
            return self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait()

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server was not started"
        return self._process.pid

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux)."""
        fields = Path(f"/proc/{self.pid}/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


class WorkerProcess:
    """``ddp worker`` (``python -m service.cli worker``) with ``DDP_*`` settings, started at
    once; ``with`` (or ``wait_ready``) waits until its log says it is ready, and the end of the
    ``with`` stops it (SIGTERM: its running job goes back to the queue; SIGKILL after a
    minute)."""

    def __init__(self, settings: dict[str, str], *, log_path: Path) -> None:
        env = os.environ | {f"DDP_{k.upper()}": v for k, v in settings.items()}
        self._log_path = log_path
        command = [sys.executable, "-m", "service.cli", "worker"]
        with open(log_path, "wb") as log:
            self._process = subprocess.Popen(command, env=env, stdout=log, stderr=log)

    def __enter__(self) -> WorkerProcess:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def log(self) -> str:
        return self._log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 600.0) -> None:
        deadline = time.monotonic() + timeout_s
        while " ready: " not in self.log:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ddp worker did not get ready:\n{self.log}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no clean-up, no goodbye."""
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(60)

    def stop(self) -> int:
        """SIGTERM, wait; the exit code (SIGKILL after a minute)."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait()


def stray_job_files(settings: Settings) -> list[str]:
    """What under the video jobs' files should not be there, once the app has stopped: a
    directory of no recorded job, or an attempt's partial outputs."""
    backend = open_backend(settings)
    try:
        known = {record.id for record in backend.store.records()}
        stray = []
        for directory in backend.files.root.iterdir():
            if directory.name not in known:
                stray.append(f"a directory of no job: {directory}")
            stray += [f"partial outputs: {path}" for path in directory.glob(".attempt-*")]
        return stray
    finally:
        backend.close()


@contextmanager
def redis_server(directory: Path, *, timeout_s: float = 30.0) -> Iterator[str]:
    """A ``redis-server`` (the Debian package's binary) on a free loopback port, its files in
    ``directory``, nothing saved; its URL. ``pytest.skip`` first when the binary is absent."""
    binary = shutil.which("redis-server")
    if binary is None:
        import pytest

        pytest.skip("redis-server not installed (Debian package redis-server; .ci/run has it)")
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisDown

    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    command += ["--save", "", "--appendonly", "no"]
    with open(directory / "redis.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = Redis.from_url(url)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                break
            except RedisDown:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((directory / "redis.log").read_text()) from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.terminate()
        process.wait(30)
