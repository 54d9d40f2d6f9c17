"""What ``POST /densepose`` answers: JSON (default), compressed NPZ or an overlay PNG, chosen
by the ``format`` query option or else the ``Accept`` header."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import cv2
import numpy as np

from model.encoding import result_to_json, result_to_npz_bytes
from model.structures import DensePoseResult
from model.visualize import draw_overlay
from service.errors import ServiceError

OutputFormat = Literal["json", "npz", "png"]
MEDIA_TYPES: dict[OutputFormat, str] = {
    "json": "application/json",
    "npz": "application/x-npz",
    "png": "image/png",
}
_WILDCARDS: dict[str, OutputFormat] = {"*/*": "json", "application/*": "json", "image/*": "png"}


def negotiate(requested: OutputFormat | None, accept: str | None) -> OutputFormat:
    """``requested`` if given; else the Accept header's preferred type we can produce
    (highest q, then first listed); no header or ``*/*`` -> JSON.

    Raises:
        ServiceError: 406 when Accept names only types this endpoint cannot produce.
    """
    if requested is not None:
        return requested
    if not accept or not accept.strip():
        return "json"
    by_media = {media: name for name, media in MEDIA_TYPES.items()} | _WILDCARDS
    offers: list[tuple[float, int, OutputFormat]] = []
    for position, entry in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in entry.split(";"))
        quality = next((_float(p[2:]) for p in params if p.startswith("q=")), 1.0)
        if media.lower() in by_media and quality > 0:
            offers.append((-quality, position, by_media[media.lower()]))
    if not offers:
        raise ServiceError(
            406,
            "not_acceptable",
            f"cannot produce {accept!r}: choose one of {', '.join(MEDIA_TYPES.values())}",
        )
    return min(offers)[2]


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def encode_body(
    result: DensePoseResult,
    image_rgb: np.ndarray,
    output: OutputFormat,
    *,
    include: Iterable[str],
) -> bytes | dict[str, Any]:
    """The response payload: NPZ or PNG bytes, or for JSON the ``result_to_json`` dict (the
    route adds timings and serialises it)."""
    if output == "json":
        return result_to_json(result, include=include)
    if output == "npz":
        return result_to_npz_bytes(result)
    overlay_bgr = cv2.cvtColor(draw_overlay(image_rgb, result), cv2.COLOR_RGB2BGR)
    ok, png = cv2.imencode(".png", overlay_bgr)
    if not ok:
        raise RuntimeError(f"PNG encoding failed for an overlay of shape {overlay_bgr.shape}")
    return png.tobytes()
