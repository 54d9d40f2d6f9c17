"""A small synchronous client of the service.

client = DensePoseClient("http://127.0.0.1:8000")
client.wait_until_ready()
answer = client.predict("photo.jpg")              # JSON dict: persons, timings, ...
arrays = client.predict_arrays("photo.jpg")       # NPZ arrays: boxes_xyxy, masks, u, v, ...
overlay_png = client.predict_overlay("photo.jpg")
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from model.encoding import npz_bytes_to_arrays

ImageInput = str | Path | bytes | np.ndarray
"""A file path, encoded image bytes, or an (H, W, 3) uint8 RGB array (sent as PNG)."""


def encode_upload(image: ImageInput) -> bytes:
    if isinstance(image, bytes):
        return image
    if isinstance(image, np.ndarray):
        ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"cannot encode an array of shape {image.shape} as PNG")
        return png.tobytes()
    return Path(image).read_bytes()


class ServiceError(RuntimeError):
    """The service answered with an error: status and its JSON ``error`` object."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class DensePoseClient:
    def __init__(self, base_url: str, *, timeout_s: float = 60.0) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s)

    def __enter__(self) -> DensePoseClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def wait_until_ready(self, *, timeout_s: float = 120.0, poll_s: float = 0.1) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"service not ready after {timeout_s:g} s")
            time.sleep(poll_s)

    def model_info(self) -> dict[str, Any]:
        return dict(self._checked(self._http.get("/v1/model")).json())

    def predict(self, image: ImageInput, **options: Any) -> dict[str, Any]:
        """JSON answer; ``options``: score_threshold, max_persons, outputs (list)."""
        return dict(self._post(image, "json", options).json())

    def predict_arrays(self, image: ImageInput, **options: Any) -> dict[str, np.ndarray]:
        return npz_bytes_to_arrays(self._post(image, "npz", options).content)

    def predict_overlay(self, image: ImageInput, **options: Any) -> bytes:
        return self._post(image, "png", options).content

    def _post(self, image: ImageInput, output: str, options: dict[str, Any]) -> httpx.Response:
        params = {k: v for k, v in options.items() if v is not None} | {"format": output}
        files = {"file": ("image", encode_upload(image), "application/octet-stream")}
        return self._checked(self._http.post("/densepose", params=params, files=files))

    @staticmethod
    def _checked(response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        try:
            error = response.json()["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", response.text[:200]
        raise ServiceError(response.status_code, code, message)
