"""Helpers shared by the service's tests and benchmarks: a tiny checkpoint, test images, and
the service running as a real uvicorn process on a free loopback port."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import TracebackType

import httpx
import numpy as np
import torch
from PIL import Image

from model.checkpoint import save_checkpoint
from model.config import DDPConfig, tiny_config
from model.network.ddp import build_ddp


def tiny_checkpoint(path: Path, *, persons: bool = True, seed: int = 0) -> Path:
    """:func:`random_checkpoint` of the ``tiny`` config."""
    return random_checkpoint(path, tiny_config(), persons=persons, seed=seed)


def random_checkpoint(
    path: Path, config: DDPConfig, *, persons: bool = True, seed: int = 0
) -> Path:
    """A random network of ``config`` saved at ``path``. With ``persons`` its detection
    thresholds are 0 and it keeps 3 detections, so every image yields 3 (deterministic)
    persons."""
    if persons:
        instance = dataclasses.replace(
            config.instance,
            candidate_score_threshold=0.0,
            detection_score_threshold=0.0,
            max_detections=3,
        )
        config = config.replace(instance=instance)
    torch.manual_seed(seed)
    return save_checkpoint(build_ddp(config), config, path)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m uvicorn --factory service.app:create_app`` with ``DDP_*`` settings, on a
    free loopback port; ``with`` waits until ``/readyz`` and stops it (SIGTERM) at the end."""

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
