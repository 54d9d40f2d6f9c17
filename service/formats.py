"""What ``POST /densepose`` answers: one registry of output formats (name -> media type ->
encoder), and the choice among them by the ``format`` query option or else the ``Accept``
header. A new format is one entry of ``FORMATS``: the option, the negotiation, the OpenAPI
document and the route all read it from there.

Every encoder takes the request's ``Deadline`` and checks it before each person (and before a
last whole-image step such as the NPZ's compression): an answer nobody waits for any more
stops within one person's work (``DeadlineExceeded``)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Protocol, TypeVar

import cv2
from pydantic import AfterValidator, WithJsonSchema

from model.inference.deadline import NO_DEADLINE, Deadline
from model.inference.images import DecodedImage
from model.outputs.encoding import result_to_npz_bytes
from model.outputs.visualize import draw_overlay
from model.structures import DensePoseResult
from service.errors import ServiceError
from service.schemas import (
    DensePoseResponse,
    ImageSize,
    JsonPart,
    Person,
    Timings,
    downscaled_from,
    image_size_of,
    persons_of,
)

Encoded = TypeVar("Encoded")
Encoded_co = TypeVar("Encoded_co", covariant=True)


class Encoder(Protocol[Encoded_co]):
    """``encode(result, image, json_parts, deadline)``: the CPU work of an answer, ``result``
    in the pixels of ``image.rgb``.

    Raises:
        DeadlineExceeded: before a person (or a last whole-image step), once ``deadline``
            (default: none) has passed.
    """

    def __call__(
        self,
        result: DensePoseResult,
        image: DecodedImage,
        json_parts: Collection[JsonPart],
        deadline: Deadline = ...,
        /,
    ) -> Encoded_co: ...


@dataclass(frozen=True)
class OutputFormat(Generic[Encoded]):
    """One answer format: its media type, and how a result becomes the response body, in two
    steps: ``encode`` does the work (timed: the answer's ``encode_s``), then ``body`` makes
    the bytes from it, the model id and the timings (the JSON answer carries those two)."""

    media_type: str
    description: str
    encode: Encoder[Encoded]
    """``encode(result, image, json_parts, deadline)``: the CPU work, in a worker thread, timed
    as ``encode_s``."""
    body: Callable[[Encoded, str, Timings], bytes]
    """``body(encoded, model_id, timings)``: the bytes sent."""


_JsonEncoded = tuple[ImageSize, ImageSize | None, list[Person]]
"""The JSON answer's image size, the upload's size if it was downscaled, and persons."""


def _encode_json(
    result: DensePoseResult,
    image: DecodedImage,
    parts: Collection[JsonPart],
    deadline: Deadline = NO_DEADLINE,
) -> _JsonEncoded:
    persons = persons_of(result, parts=parts, deadline=deadline)
    return image_size_of(result), downscaled_from(image), persons


def _json_body(encoded: _JsonEncoded, model_id: str, timings: Timings) -> bytes:
    image, original, persons = encoded
    answer = DensePoseResponse(
        model_id=model_id,
        image=image,
        downscaled_from=original,
        persons=persons,
        timings=timings,
    )
    return answer.to_json()


def _encode_npz(
    result: DensePoseResult,
    _: DecodedImage,
    __: Collection[JsonPart],
    deadline: Deadline = NO_DEADLINE,
) -> bytes:
    return result_to_npz_bytes(result, deadline=deadline)


def _encode_overlay_png(
    result: DensePoseResult,
    image: DecodedImage,
    _: Collection[JsonPart],
    deadline: Deadline = NO_DEADLINE,
) -> bytes:
    overlay_rgb = draw_overlay(image.rgb, result, deadline=deadline)
    deadline.check("before the PNG is compressed")
    overlay_bgr = cv2.cvtColor(overlay_rgb, cv2.COLOR_RGB2BGR)
    ok, png = cv2.imencode(".png", overlay_bgr)
    if not ok:
        raise RuntimeError(f"PNG encoding failed for an overlay of shape {overlay_bgr.shape}")
    return png.tobytes()


def _as_encoded(encoded: bytes, _model_id: str, _timings: Timings) -> bytes:
    """The body of a format whose bytes carry neither the model id nor the timings (both are
    response headers)."""
    return encoded


FORMATS: dict[str, OutputFormat[Any]] = {
    "json": OutputFormat(
        media_type="application/json",
        description="per person: score, boxes and, as chosen by outputs, mask and IUV PNGs of "
        "its crop",
        encode=_encode_json,
        body=_json_body,
    ),
    "npz": OutputFormat(
        media_type="application/x-npz",
        description="the image as a one-frame clip (docs/outputs.md): parts, u, v and "
        "instances maps, person_* table",
        encode=_encode_npz,
        body=_as_encoded,
    ),
    "png": OutputFormat(
        media_type="image/png",
        description="the image with the persons' parts drawn over it",
        encode=_encode_overlay_png,
        body=_as_encoded,
    ),
}
"""Format name -> format; the order decides what ``type/*`` in an Accept header picks."""
DEFAULT_FORMAT = "json"
"""Without a ``format`` option, and for an absent Accept header or ``*/*``."""


def _known_format(name: str) -> str:
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}: expected one of {', '.join(FORMATS)}")
    return name


FormatName = Annotated[
    str, AfterValidator(_known_format), WithJsonSchema({"type": "string", "enum": list(FORMATS)})
]
"""A key of ``FORMATS`` (a query option)."""


def _by_accepted_type() -> dict[str, str]:
    """Accept header media range -> format name: each format's media type, ``type/*`` the first
    format of that type, ``*/*`` the default."""
    names = {"*/*": DEFAULT_FORMAT}
    for name, output in FORMATS.items():
        names[output.media_type] = name
        names.setdefault(output.media_type.split("/")[0] + "/*", name)
    return names


_BY_ACCEPTED_TYPE = _by_accepted_type()


def negotiate(requested: str | None, accept: str | None) -> OutputFormat[Any]:
    """``requested`` if given; else the Accept header's preferred type we can produce
    (highest q, then first listed); no header or ``*/*`` -> ``DEFAULT_FORMAT``.

    Raises:
        ServiceError: 406 when Accept names only types this endpoint cannot produce.
    """
    if requested is not None:
        return FORMATS[requested]
    if not accept or not accept.strip():
        return FORMATS[DEFAULT_FORMAT]
    offers: list[tuple[float, int, str]] = []
    for position, entry in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in entry.split(";"))
        quality = next((_float(p[2:]) for p in params if p.startswith("q=")), 1.0)
        if media.lower() in _BY_ACCEPTED_TYPE and quality > 0:
            offers.append((-quality, position, _BY_ACCEPTED_TYPE[media.lower()]))
    if not offers:
        media_types = ", ".join(output.media_type for output in FORMATS.values())
        raise ServiceError(
            406, "not_acceptable", f"cannot produce {accept!r}: choose one of {media_types}"
        )
    return FORMATS[min(offers)[2]]


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
