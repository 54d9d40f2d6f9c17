"""``POST /densepose``: one image in, dense pose of every person out."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from model.encoding import JSON_FIELDS
from service.decoding import MEDIA_TYPES as IMAGE_MEDIA_TYPES
from service.decoding import decode_image
from service.deps import ModelDep, StateDep
from service.inference import select_persons
from service.middleware import PERSONS_STATE_KEY
from service.responses import MEDIA_TYPES, OutputFormat, encode_body, negotiate
from service.uploads import read_upload

router = APIRouter(tags=["densepose"])

JsonPart = Literal["mask", "iuv"]
assert set(get_args(JsonPart)) == set(JSON_FIELDS)


class DensePoseOptions(BaseModel):
    """Query options of ``POST /densepose``; unknown options are an error (422)."""

    model_config = ConfigDict(extra="forbid")

    score_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Drop persons scoring below this (default: the model's own threshold).",
    )
    max_persons: int = Field(default=100, ge=1, le=100, description="Return at most this many.")
    outputs: list[JsonPart] = Field(
        default=["mask", "iuv"], description="JSON only: which per-person PNGs to include."
    )
    format: OutputFormat | None = Field(
        default=None, description="json, npz or png (overlay); overrides the Accept header."
    )


class Person(BaseModel):
    score: float
    box_xyxy: list[float] = Field(description="x0, y0, x1, y1 in image pixels")
    box_int: list[int] = Field(description="the integer crop the PNGs cover")
    mask_png_base64: str | None = Field(default=None, description="0/255 mask PNG of the crop")
    iuv_png_base64: str | None = Field(
        default=None, description="IUV PNG of the crop, channels I, U·255, V·255"
    )


class Timings(BaseModel):
    decode_s: float
    queue_s: float
    model_s: float = Field(description="duration of the whole batch this image ran in")
    encode_s: float
    batch_size: int


class ImageSize(BaseModel):
    height: int
    width: int


class DensePoseResponse(BaseModel):
    model_id: str
    image: ImageSize
    persons: list[Person]
    timings: Timings


_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        **{
            media: {"schema": {"type": "string", "format": "binary"}} for media in IMAGE_MEDIA_TYPES
        },
    },
}


@router.post(
    "/densepose",
    summary="Dense pose (I, U, V and a mask per person) of one image",
    response_class=Response,
    responses={
        200: {
            "model": DensePoseResponse,
            "content": {
                MEDIA_TYPES["npz"]: {},
                MEDIA_TYPES["png"]: {},
            },
            "description": "JSON (default), NPZ (boxes_xyxy, scores, masks, parts, u, v at "
            "full image size) or the overlay PNG",
        },
        400: {"description": "empty, corrupt or truncated upload"},
        413: {"description": "upload over the byte limit or image over the pixel limit"},
        415: {"description": "not a JPEG, PNG, WebP or BMP image"},
        422: {"description": "invalid query options"},
        503: {"description": "queue full (Retry-After), shutting down, or not ready"},
        504: {"description": "no result within the request timeout"},
    },
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def densepose(
    request: Request,
    options: Annotated[DensePoseOptions, Query()],
    state: StateDep,
    model: ModelDep,
) -> Response:
    output = negotiate(options.format, request.headers.get("accept"))
    data = await read_upload(request, max_bytes=state.settings.max_upload_bytes)
    start = time.perf_counter()
    image = await state.run_cpu(decode_image, data, max_pixels=state.settings.max_image_pixels)
    decode_s = time.perf_counter() - start

    batched = await state.predict(image, request)
    result = select_persons(
        batched.value, score_threshold=options.score_threshold, max_persons=options.max_persons
    )
    setattr(request.state, PERSONS_STATE_KEY, len(result))
    state.metrics.persons.observe(len(result))

    start = time.perf_counter()
    body = await state.run_cpu(encode_body, result, image, output, include=options.outputs)
    timings = Timings(
        decode_s=decode_s,
        queue_s=batched.queue_s,
        model_s=batched.model_s,
        encode_s=time.perf_counter() - start,
        batch_size=batched.batch_size,
    )
    headers = {
        "X-Model-Id": model.info.model_id,
        "Server-Timing": ", ".join(
            f"{name};dur={1000 * getattr(timings, f'{name}_s'):.2f}"
            for name in ("decode", "queue", "model", "encode")
        ),
    }
    if isinstance(body, bytes):
        return Response(body, media_type=MEDIA_TYPES[output], headers=headers)
    payload = {
        "model_id": model.info.model_id,
        "image": {"height": body["height"], "width": body["width"]},
        "persons": body["persons"],
        "timings": timings.model_dump(),
    }
    return Response(json.dumps(payload), media_type=MEDIA_TYPES["json"], headers=headers)
