"""Round trips of every encoder in ``model.outputs.encoding``, the IUV PNG's channel order as
OpenCV and Pillow read it, the NPZ of an image, and the overlap rule of pasting."""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from model.outputs.encoding import (
    decode_iuv_png,
    decode_mask_png,
    encode_iuv_png,
    encode_mask_png,
    frame_arrays,
    mask_owners,
    paste_owners,
    paste_parts_uv,
    result_to_npz_bytes,
    to_base64,
)
from model.outputs.npz import read_npz
from model.structures import DensePoseResult

HALF_STEP = 0.5 / 255 + 1e-6
HEIGHT, WIDTH = 20, 30


def _crop(height: int, width: int, seed: int) -> tuple[Tensor, Tensor]:
    """Random parts (h, w) uint8 in 0..24 and uv (2, h, w) in [0, 1], uv = 0 where I = 0."""
    generator = torch.Generator().manual_seed(seed)
    parts = torch.randint(0, 25, (height, width), generator=generator, dtype=torch.uint8)
    uv = torch.rand(2, height, width, generator=generator) * (parts > 0)
    return parts, uv


def _result(boxes: list[list[float]], scores: list[float]) -> DensePoseResult:
    """A (HEIGHT, WIDTH) image's result whose persons have random crops, masks = labels > 0."""
    result = DensePoseResult(
        boxes_xyxy=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        masks=torch.zeros(len(boxes), HEIGHT, WIDTH, dtype=torch.bool),
        parts=[],
        uv=[],
    )
    for index, (x0, y0, x1, y1) in enumerate(result.integer_boxes().tolist()):
        parts, uv = _crop(y1 - y0, x1 - x0, seed=index)
        result.parts.append(parts)
        result.uv.append(uv)
        result.masks[index, y0:y1, x0:x1] = parts > 0
    return result


def test_iuv_png_round_trip_exact_parts_and_quantised_uv() -> None:
    parts, uv = _crop(17, 11, seed=0)
    decoded_parts, decoded_uv = decode_iuv_png(encode_iuv_png(parts, uv))
    assert decoded_parts.dtype == torch.uint8 and decoded_uv.dtype == torch.float32
    assert torch.equal(decoded_parts, parts)
    assert decoded_uv.shape == uv.shape
    assert (decoded_uv - uv).abs().max() <= HALF_STEP


def test_iuv_png_follows_densepose_blue_is_i_green_u_red_v(tmp_path) -> None:
    """DensePose writes ``cv2.imwrite(path, [I, U·255, V·255])`` and reads I back as
    ``cv2.imread(path)[..., 0]``: so must every reader of this file."""
    parts, uv = _crop(9, 13, seed=1)
    path = tmp_path / "iuv.png"
    path.write_bytes(encode_iuv_png(parts, uv))
    i, u, v = parts.numpy(), *(uv * 255).round().to(torch.uint8).numpy()
    bgr = cv2.imread(str(path))  # what DensePose's own notebooks do
    np.testing.assert_array_equal(bgr[..., 0], i)
    np.testing.assert_array_equal(bgr[..., 1], u)
    np.testing.assert_array_equal(bgr[..., 2], v)
    with Image.open(path) as image:  # Pillow keeps the file's R, G, B order
        assert image.mode == "RGB"
        red, green, blue = np.moveaxis(np.asarray(image), -1, 0)
    np.testing.assert_array_equal(blue, i)
    np.testing.assert_array_equal(green, u)
    np.testing.assert_array_equal(red, v)


def test_iuv_png_of_a_part_label_is_blue() -> None:
    """A pixel of chart 24 with U = V = 0 is pure blue (0, 0, 24) in RGB: a reader that takes
    red as I would see background there."""
    data = encode_iuv_png(torch.full((1, 1), 24, dtype=torch.uint8), torch.zeros(2, 1, 1))
    with Image.open(io.BytesIO(data)) as image:
        assert image.getpixel((0, 0)) == (0, 0, 24)


@pytest.mark.parametrize(
    ("parts", "uv"),
    [
        (torch.full((4, 4), 25, dtype=torch.uint8), torch.zeros(2, 4, 4)),
        (torch.zeros(4, 4, dtype=torch.int64), torch.zeros(2, 4, 4)),
        (torch.zeros(4, 4, dtype=torch.uint8), torch.zeros(2, 4, 5)),
        (torch.zeros(4, 4, dtype=torch.uint8), torch.zeros(2, 4, 4, dtype=torch.uint8)),
    ],
)
def test_iuv_png_rejects_bad_input(parts: Tensor, uv: Tensor) -> None:
    with pytest.raises(ValueError, match=r"parts|uv"):
        encode_iuv_png(parts, uv)


def test_decoders_reject_wrong_pngs() -> None:
    with pytest.raises(ValueError, match="not a decodable PNG"):
        decode_iuv_png(b"not a png")
    mask_png = encode_mask_png(torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="3 channel"):
        decode_iuv_png(mask_png)
    with pytest.raises(ValueError, match="1 channel"):
        decode_mask_png(encode_iuv_png(*_crop(3, 3, seed=2)))


def test_mask_png_round_trip_is_0_255_grayscale() -> None:
    mask = torch.rand(12, 7, generator=torch.Generator().manual_seed(3)) > 0.5
    data = encode_mask_png(mask)
    stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert stored.shape == (12, 7) and stored.dtype == np.uint8
    assert set(np.unique(stored).tolist()) == {0, 255}
    assert torch.equal(decode_mask_png(data), mask)


def test_to_base64_round_trip() -> None:
    data = bytes(range(256))
    text = to_base64(data)
    assert isinstance(text, str) and base64.b64decode(text, validate=True) == data


def test_image_npz_is_a_one_frame_clip_of_the_merged_maps() -> None:
    result = _result([[2.5, 3.0, 12.2, 15.0], [8.0, 1.0, 29.5, 19.9]], [0.9, 0.4])
    arrays = read_npz(result_to_npz_bytes(result))
    assert set(arrays) == {"parts", "u", "v", "instances", "person_frame", "person_instance",
                           "person_track_id", "person_box_xyxy", "person_score"}  # fmt: skip
    parts, u, v = paste_parts_uv(result)
    np.testing.assert_array_equal(arrays["parts"], parts.numpy()[None])
    for name, exact in (("u", u), ("v", v)):
        assert arrays[name].dtype == np.float16
        assert np.abs(arrays[name][0].astype(np.float32) - exact.numpy()).max() <= 2**-12
    owner = mask_owners(result).numpy()
    np.testing.assert_array_equal(arrays["instances"][0], owner + 1)
    np.testing.assert_array_equal(arrays["person_box_xyxy"], result.boxes_xyxy.numpy())
    np.testing.assert_array_equal(arrays["person_score"], result.scores.numpy())
    np.testing.assert_array_equal(arrays["person_frame"], [0, 0])
    np.testing.assert_array_equal(arrays["person_instance"], [1, 2])
    np.testing.assert_array_equal(arrays["person_track_id"], [1, 2])
    for i in range(len(result)):  # the documented way to a person's mask
        mask = arrays["instances"][arrays["person_frame"][i]] == arrays["person_instance"][i]
        np.testing.assert_array_equal(mask, owner == i)


def test_frame_arrays_carry_the_given_track_ids() -> None:
    result = _result([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 18.0]], [0.8, 0.7])
    arrays = frame_arrays(result, np.array([7, 3]))
    assert arrays.track_ids.dtype == np.int32 and arrays.track_ids.tolist() == [7, 3]
    assert arrays.instances.dtype == np.uint16 and int(arrays.instances.max()) == 2


def test_image_npz_does_not_grow_with_the_persons_once_loaded() -> None:
    """Per-pixel arrays are merged maps (7 bytes per pixel), not one full-size map per person."""
    boxes = [[float(x), 2.0, x + 6.0, 18.0] for x in range(0, 24, 2)]
    many = read_npz(result_to_npz_bytes(_result(boxes, [0.9 - 0.01 * i for i in range(12)])))
    one = read_npz(result_to_npz_bytes(_result(boxes[:1], [0.9])))
    for name in ("parts", "u", "v", "instances"):
        assert many[name].nbytes == one[name].nbytes == HEIGHT * WIDTH * many[name].itemsize
    maps = sum(many[name].nbytes for name in ("parts", "u", "v", "instances"))
    assert maps == 7 * HEIGHT * WIDTH


def test_npz_of_empty_result_keeps_image_size() -> None:
    arrays = read_npz(result_to_npz_bytes(DensePoseResult.empty(6, 9)))
    assert arrays["person_box_xyxy"].shape == (0, 4) and arrays["person_score"].shape == (0,)
    for name in ("parts", "u", "v", "instances"):
        assert arrays[name].shape == (1, 6, 9) and not arrays[name].any(), name


def _constant_person(box: list[int], part: int, u: float) -> tuple[Tensor, Tensor]:
    """Crops of a person labelled ``part`` with U = ``u`` (V = 0) on its whole box."""
    x0, y0, x1, y1 = box
    parts = torch.full((y1 - y0, x1 - x0), part, dtype=torch.uint8)
    uv = torch.zeros(2, y1 - y0, x1 - x0)
    uv[0] = u
    return parts, uv


def test_paste_gives_overlaps_to_the_higher_score() -> None:
    boxes = [[0, 0, 6, 6], [3, 3, 8, 8], [0, 0, 8, 8]]
    crops = [_constant_person(boxes[0], 2, 0.25), _constant_person(boxes[1], 9, 0.75),
             _constant_person(boxes[2], 23, 0.5)]  # fmt: skip
    crops[2][0][:4] = 0  # the top-scoring person leaves rows 0-3 unlabelled
    result = DensePoseResult(
        boxes_xyxy=torch.tensor(boxes, dtype=torch.float32),
        scores=torch.tensor([0.3, 0.9, 0.95]),
        masks=torch.zeros(3, 8, 8, dtype=torch.bool),
        parts=[parts for parts, _ in crops],
        uv=[uv for _, uv in crops],
    )
    owner, _, _ = paste_owners(result)
    expected_owner = torch.full((8, 8), -1)
    expected_owner[:4, :6] = 0
    expected_owner[3, 3:] = 1  # overlaps person 0 at columns 3-5: the higher score wins
    expected_owner[4:] = 2
    assert torch.equal(owner, expected_owner)
    parts, u, v = paste_parts_uv(result)
    part_of = torch.tensor([2, 9, 23, 0])  # index -1 -> 0
    u_of = torch.tensor([0.25, 0.75, 0.5, 0.0])
    assert torch.equal(parts, part_of[expected_owner].to(torch.uint8))
    assert torch.equal(u, u_of[expected_owner])
    assert not v.any()


def test_paste_ties_go_to_the_lower_index() -> None:
    crops = [_constant_person([0, 0, 4, 4], 2, 0.1), _constant_person([2, 2, 6, 6], 9, 0.9)]
    result = DensePoseResult(
        boxes_xyxy=torch.tensor([[0, 0, 4, 4], [2, 2, 6, 6]], dtype=torch.float32),
        scores=torch.tensor([0.5, 0.5]),
        masks=torch.zeros(2, 8, 8, dtype=torch.bool),
        parts=[parts for parts, _ in crops],
        uv=[uv for _, uv in crops],
    )
    parts, _, _ = paste_parts_uv(result)
    assert parts[3, 3] == 2 and parts[5, 5] == 9


def test_paste_rejects_crops_that_do_not_match_the_box() -> None:
    result = _result([[0.0, 0.0, 4.0, 4.0]], [0.5])
    result.parts[0] = result.parts[0][:3]
    with pytest.raises(ValueError, match="box_int"):
        paste_parts_uv(result)
