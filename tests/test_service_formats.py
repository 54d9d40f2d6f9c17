"""The answer formats of ``POST /densepose`` without HTTP: every registered format round-trips,
the JSON answer has the documented shape, and content negotiation picks from the registry."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import get_args

import cv2
import numpy as np
import pytest
import torch

from model.inference.images import DecodedImage
from model.outputs.encoding import decode_iuv_png, decode_mask_png, paste_parts_uv
from model.outputs.npz import read_npz
from model.outputs.visualize import draw_overlay
from model.structures import DensePoseResult
from service.errors import ServiceError
from service.formats import DEFAULT_FORMAT, FORMATS, negotiate
from service.schemas import JsonPart, Timings, persons_of

HALF_STEP = 0.5 / 255 + 1e-6
HEIGHT, WIDTH = 20, 30
TIMINGS = Timings(decode_s=0.001, queue_s=0.002, model_s=0.003, encode_s=0.004, batch_size=2)
ALL_PARTS: tuple[JsonPart, ...] = get_args(JsonPart)


def _result(boxes: list[list[float]], scores: list[float]) -> DensePoseResult:
    """A (HEIGHT, WIDTH) image's result whose persons have random crops, masks = labels > 0."""
    result = DensePoseResult(
        boxes_xyxy=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        masks=torch.zeros(len(boxes), HEIGHT, WIDTH, dtype=torch.bool),
        parts=[],
        uv=[],
    )
    generator = torch.Generator().manual_seed(0)
    for index, (x0, y0, x1, y1) in enumerate(result.integer_boxes().tolist()):
        parts = torch.randint(0, 25, (y1 - y0, x1 - x0), generator=generator, dtype=torch.uint8)
        result.parts.append(parts)
        result.uv.append(torch.rand(2, y1 - y0, x1 - x0, generator=generator) * (parts > 0))
        result.masks[index, y0:y1, x0:x1] = parts > 0
    return result


RESULT = _result([[0.0, 0.0, 10.0, 10.0], [5.5, 4.2, 30.0, 20.0]], [0.8, 0.6])
IMAGE = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
DECODED = DecodedImage(IMAGE, (HEIGHT, WIDTH))


def _answer(name: str, result: DensePoseResult, parts: tuple[JsonPart, ...] = ALL_PARTS) -> bytes:
    output = FORMATS[name]
    return output.body(output.encode(result, DECODED, parts), "tiny@0123456789ab", TIMINGS)


def _check_json(body: bytes, result: DensePoseResult) -> None:
    answer = json.loads(body)
    assert answer["model_id"] == "tiny@0123456789ab"
    assert answer["image"] == {"height": HEIGHT, "width": WIDTH}
    assert answer["timings"] == TIMINGS.model_dump()
    assert len(answer["persons"]) == len(result)
    for index, person in enumerate(answer["persons"]):
        x0, y0, x1, y1 = person["box_int"]
        assert person["box_int"] == result.integer_boxes()[index].tolist()
        assert person["score"] == pytest.approx(float(result.scores[index]))
        assert person["box_xyxy"] == pytest.approx(result.boxes_xyxy[index].tolist())
        mask = decode_mask_png(base64.b64decode(person["mask_png_base64"]))
        assert torch.equal(mask, result.masks[index, y0:y1, x0:x1])
        parts, uv = decode_iuv_png(base64.b64decode(person["iuv_png_base64"]))
        assert torch.equal(parts, result.parts[index])
        assert (uv - result.uv[index]).abs().max() <= HALF_STEP


def _check_npz(body: bytes, result: DensePoseResult) -> None:
    arrays = read_npz(body)
    np.testing.assert_array_equal(arrays["person_box_xyxy"], result.boxes_xyxy.numpy())
    np.testing.assert_array_equal(arrays["person_score"], result.scores.numpy())
    np.testing.assert_array_equal(arrays["parts"][0], paste_parts_uv(result)[0].numpy())
    for name in ("parts", "u", "v", "instances"):
        assert arrays[name].shape == (1, HEIGHT, WIDTH), name
    for i in range(len(result)):  # each mask where no better-scoring mask covers it
        mask = arrays["instances"][0] == arrays["person_instance"][i]
        assert mask.any() and not (mask & ~result.masks[i].numpy()).any()


def _check_png(body: bytes, result: DensePoseResult) -> None:
    decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    expected_rgb = draw_overlay(IMAGE, result)
    np.testing.assert_array_equal(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), expected_rgb)


DECODERS: dict[str, Callable[[bytes, DensePoseResult], None]] = {
    "json": _check_json,
    "npz": _check_npz,
    "png": _check_png,
}


def test_every_registered_format_has_a_round_trip_test() -> None:
    assert set(DECODERS) == set(FORMATS)


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_round_trips(name: str) -> None:
    DECODERS[name](_answer(name, RESULT), RESULT)


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_answers_zero_persons(name: str) -> None:
    empty = DensePoseResult.empty(HEIGHT, WIDTH)
    DECODERS[name](_answer(name, empty), empty)


def test_json_answer_has_the_documented_keys_and_leaves_out_parts_not_asked_for() -> None:
    answer = json.loads(_answer("json", RESULT, parts=("mask",)))
    assert list(answer) == ["model_id", "image", "persons", "timings"]
    assert list(answer["persons"][0]) == ["score", "box_xyxy", "box_int", "mask_png_base64"]
    bare = json.loads(_answer("json", RESULT, parts=()))
    assert list(bare["persons"][0]) == ["score", "box_xyxy", "box_int"]


def test_persons_keep_the_result_order() -> None:
    reordered = RESULT.select([1, 0])
    scores = [person.score for person in persons_of(reordered, parts=())]
    assert scores == pytest.approx(reordered.scores.tolist())


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, DEFAULT_FORMAT),
        ("", DEFAULT_FORMAT),
        ("*/*", DEFAULT_FORMAT),
        ("application/x-npz", "npz"),
        ("IMAGE/PNG", "png"),
        ("image/*", "png"),
        ("application/*", "json"),
        ("image/png;q=0.5, application/x-npz;q=0.9", "npz"),
        ("image/png, application/json", "png"),
        ("text/html, application/x-npz;q=0.1", "npz"),
    ],
)
def test_negotiation_picks_from_the_registry(accept: str | None, expected: str) -> None:
    assert negotiate(None, accept) is FORMATS[expected]


def test_the_format_option_overrides_the_accept_header() -> None:
    assert negotiate("png", "application/json") is FORMATS["png"]


@pytest.mark.parametrize("accept", ["text/html", "application/x-npz;q=0"])
def test_unsatisfiable_accept_is_406_naming_every_media_type(accept: str) -> None:
    with pytest.raises(ServiceError) as refused:
        negotiate(None, accept)
    assert refused.value.status == 406
    for output in FORMATS.values():
        assert output.media_type in refused.value.message


def test_each_format_has_its_own_media_type() -> None:
    media_types = [output.media_type for output in FORMATS.values()]
    assert len(set(media_types)) == len(media_types)


def test_json_of_a_downscaled_upload_gives_the_uploads_own_size() -> None:
    """The result is in the downscaled image's pixels (HEIGHT × WIDTH); the upload was 4 times
    as large: ``downscaled_from`` says so, and only then."""
    output = FORMATS["json"]
    downscaled = DecodedImage(IMAGE, (4 * HEIGHT, 4 * WIDTH))
    answer = json.loads(output.body(output.encode(RESULT, downscaled, ()), "m", TIMINGS))
    assert answer["image"] == {"height": HEIGHT, "width": WIDTH}
    assert answer["downscaled_from"] == {"height": 4 * HEIGHT, "width": 4 * WIDTH}
    assert "downscaled_from" not in json.loads(_answer("json", RESULT))

