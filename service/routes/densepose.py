"""``POST /densepose``: one image in, dense pose of every person out.

A request's ``Deadline`` (``request_timeout_s``) starts when its image enters the queue and
covers the model's work and the encoding: past it, the work stops where it is (between two
persons) and the answer is 504 ``deadline``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from model.inference.deadline import Deadline, DeadlineExceeded
from model.inference.images import DecodedImage
from service.batching import reject
from service.decoding import RAW_MEDIA_TYPES as IMAGE_MEDIA_TYPES
from service.decoding import decode_image
from service.deps import ModelDep, StateDep
from service.errors import error_responses
from service.formats import DEFAULT_FORMAT, FORMATS, FormatName, negotiate
from service.middleware import PERSONS_STATE_KEY
from service.schemas import DensePoseResponse, JsonPart, ScoreThreshold, Timings
from service.uploads import read_upload, request_body

router = APIRouter(tags=["densepose"])

_FORMATS_DESCRIBED = "; ".join(
    f"{name} ({output.media_type}): {output.description}" for name, output in FORMATS.items()
)


class DensePoseOptions(BaseModel):
    """Query options of ``POST /densepose``; unknown options are an error (422)."""

    model_config = ConfigDict(extra="forbid")

    score_threshold: ScoreThreshold = None
    max_persons: int = Field(default=100, ge=1, le=100, description="Return at most this many.")
    outputs: list[JsonPart] = Field(
        default=["mask", "iuv"], description="JSON only: which per-person PNGs to include."
    )
    format: FormatName | None = Field(
        default=None,
        description=f"One of {', '.join(FORMATS)}; overrides the Accept header.",
    )


@router.post(
    "/densepose",
    summary="Dense pose (I, U, V and a mask per person) of one image",
    response_class=Response,
    responses={
        200: {
            "model": DensePoseResponse,
            "content": {output.media_type: {} for output in FORMATS.values()},
            "description": f"In the format the format option or else the Accept header "
            f"chooses ({DEFAULT_FORMAT} by default). {_FORMATS_DESCRIBED}",
        },
        **error_responses(
            {
                400: "empty, corrupt or truncated upload",
                406: "the Accept header names no type this endpoint produces",
                413: "upload over the byte limit or image over the pixel limit",
                415: "not a JPEG, PNG, WebP or BMP image",
                422: "invalid query options",
                503: "queue full, shutting down, or not ready (Retry-After)",
                504: "no result within the request timeout",
            },
            retry_after=(503, 504),
        ),
    },
    openapi_extra={"requestBody": request_body(IMAGE_MEDIA_TYPES)},
)
async def densepose(
    request: Request,
    options: Annotated[DensePoseOptions, Query()],
    state: StateDep,
    model: ModelDep,
) -> Response:
    output = negotiate(options.format, request.headers.get("accept"))
    settings = state.settings
    # A full queue was refused before routing (service/admission.py); the queue can fill since.
    data = await read_upload(request, max_bytes=settings.max_upload_bytes)
    with model.batcher.reserve() as place:  # held while decoding (not while a client uploads)
        start = time.perf_counter()
        image = await state.run_cpu(
            decode_image,
            data,
            max_pixels=settings.max_image_pixels,
            max_side=settings.max_image_side,
        )
        decode_s = time.perf_counter() - start
        deadline = Deadline.after(model.policy.request_timeout_s)
        batched = await state.predict(image.rgb, request, deadline=deadline, place=place)
    result = batched.value.best(
        score_threshold=options.score_threshold, max_persons=options.max_persons
    )
    setattr(request.state, PERSONS_STATE_KEY, len(result))
    state.metrics.persons.observe(len(result))

    start = time.perf_counter()
    try:
        encoded = await state.run_cpu(output.encode, result, image, options.outputs, deadline)
    except DeadlineExceeded as error:
        message = f"no answer within the request timeout: {error}"
        raise reject(state.metrics, "deadline", message) from None
    timings = Timings(
        decode_s=decode_s,
        queue_s=batched.queue_s,
        model_s=batched.model_s,
        encode_s=time.perf_counter() - start,
        batch_size=batched.batch_size,
    )
    headers = {
        "X-Model-Id": model.info.model_id,
        **_downscaled_header(image),
        "Server-Timing": ", ".join(
            f"{name};dur={1000 * getattr(timings, f'{name}_s'):.2f}"
            for name in ("decode", "queue", "model", "encode")
        ),
    }
    body = output.body(encoded, model.info.model_id, timings)
    return Response(body, media_type=output.media_type, headers=headers)


def _downscaled_header(image: DecodedImage) -> dict[str, str]:
    """``X-Downscaled-From: WIDTHxHEIGHT``, the upload's own size, when it was downscaled
    (every format; the JSON answer says it as ``downscaled_from`` too)."""
    if not image.downscaled:
        return {}
    height, width = image.original_size
    return {"X-Downscaled-From": f"{width}x{height}"}
