"""The JSON answer of ``POST /densepose``: its pydantic models, which the OpenAPI schema
documents and which are filled straight from a ``DensePoseResult`` (the one home of the
answer's shape), and the query option both dense pose routes share."""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from model.inference.deadline import NO_DEADLINE, Deadline
from model.inference.images import DecodedImage
from model.outputs.encoding import encode_iuv_png, encode_mask_png, to_base64
from model.structures import DensePoseResult

JsonPart = Literal["mask", "iuv"]
"""What a person of the JSON answer may carry besides its score and boxes."""
ScoreThreshold = Annotated[
    float | None,
    Field(
        ge=0.0,
        le=1.0,
        description="Drop persons scoring below this (default: the model's own threshold).",
    ),
]


class Person(BaseModel):
    score: float
    box_xyxy: list[float] = Field(description="x0, y0, x1, y1 in image pixels")
    box_int: list[int] = Field(description="the integer crop the PNGs cover")
    mask_png_base64: str | None = Field(default=None, description="0/255 mask PNG of the crop")
    iuv_png_base64: str | None = Field(
        default=None, description="IUV PNG of the crop: blue = I, green = U·255, red = V·255"
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
    image: ImageSize = Field(
        description="the image the boxes, crops and PNGs are in: the upload's own size, "
        "unless it was downscaled (downscaled_from)"
    )
    downscaled_from: ImageSize | None = Field(
        default=None,
        description="only for an upload longer than the service's max_image_side: its own "
        "size; it was downscaled to image (multiply a coordinate by downscaled_from.width / "
        "image.width for the upload's pixels)",
    )
    persons: list[Person]
    timings: Timings

    def to_json(self) -> bytes:
        """The answer as sent: a person's PNGs not asked for are absent, not null."""
        return self.model_dump_json(exclude_none=True).encode()


def persons_of(
    result: DensePoseResult, *, parts: Collection[JsonPart], deadline: Deadline = NO_DEADLINE
) -> list[Person]:
    """The result's persons, in its order, each with the PNGs of ``parts`` (mask: the 0/255
    mask PNG of its crop; iuv: the Detectron IUV PNG of its crop).

    Raises:
        DeadlineExceeded: before a person, once ``deadline`` has passed.
    """
    persons = []
    for i, (x0, y0, x1, y1) in enumerate(result.integer_boxes().tolist()):
        deadline.check(f"in encoding, at person {i + 1} of {len(result)}")
        mask_png = encode_mask_png(result.masks[i, y0:y1, x0:x1].cpu()) if "mask" in parts else None
        iuv_png = encode_iuv_png(result.parts[i], result.uv[i]) if "iuv" in parts else None
        persons.append(
            Person(
                score=float(result.scores[i]),
                box_xyxy=[float(c) for c in result.boxes_xyxy[i]],
                box_int=[x0, y0, x1, y1],
                mask_png_base64=None if mask_png is None else to_base64(mask_png),
                iuv_png_base64=None if iuv_png is None else to_base64(iuv_png),
            )
        )
    return persons


def image_size_of(result: DensePoseResult) -> ImageSize:
    height, width = result.masks.shape[-2:]
    return ImageSize(height=int(height), width=int(width))


def downscaled_from(image: DecodedImage) -> ImageSize | None:
    """The upload's own size if it was downscaled, else None."""
    if not image.downscaled:
        return None
    height, width = image.original_size
    return ImageSize(height=height, width=width)
