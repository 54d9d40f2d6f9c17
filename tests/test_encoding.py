"""Round trips of every encoder in ``model.outputs.encoding`` and the overlap rule of pasting."""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor

from model.outputs.encoding import (
    decode_iuv_png,
    decode_mask_png,
    encode_iuv_png,
    encode_mask_png,
    npz_bytes_to_arrays,
    paste_owners,
    paste_parts_uv,
    paste_person,
    result_to_npz_bytes,
    to_base64,
)
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


def test_iuv_png_stores_i_u_v_as_channels_0_1_2() -> None:
    parts, uv = _crop(9, 13, seed=1)
    data = encode_iuv_png(parts, uv)
    expected = torch.stack([parts, *(uv * 255).round().to(torch.uint8)], dim=-1).numpy()
    # cv2 hands back the stored channels reversed (BGR): stored channel 0 is its channel 2.
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(bgr[..., ::-1], expected)
    image_module = pytest.importorskip("PIL.Image")
    stored = np.asarray(image_module.open(io.BytesIO(data)))  # PIL keeps stored order
    np.testing.assert_array_equal(stored, expected)


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


def test_npz_round_trip_pastes_each_person_at_full_size() -> None:
    result = _result([[2.5, 3.0, 12.2, 15.0], [8.0, 1.0, 29.5, 19.9]], [0.9, 0.4])
    arrays = npz_bytes_to_arrays(result_to_npz_bytes(result))
    assert set(arrays) == {"boxes_xyxy", "scores", "masks", "parts", "u", "v"}
    expected_dtypes = {"boxes_xyxy": np.float32, "scores": np.float32, "masks": np.bool_,
                       "parts": np.uint8, "u": np.float32, "v": np.float32}  # fmt: skip
    for name, dtype in expected_dtypes.items():
        assert arrays[name].dtype == dtype, name
    np.testing.assert_array_equal(arrays["boxes_xyxy"], result.boxes_xyxy.numpy())
    np.testing.assert_array_equal(arrays["scores"], result.scores.numpy())
    np.testing.assert_array_equal(arrays["masks"], result.masks.numpy())
    for index, (x0, y0, x1, y1) in enumerate(result.integer_boxes().tolist()):
        parts, uv = paste_person(result, index)
        np.testing.assert_array_equal(arrays["parts"][index], parts.numpy())
        np.testing.assert_array_equal(arrays["u"][index], uv[0].numpy())
        np.testing.assert_array_equal(arrays["v"][index], uv[1].numpy())
        np.testing.assert_array_equal(arrays["parts"][index, y0:y1, x0:x1], result.parts[index])
        outside = np.ones((HEIGHT, WIDTH), dtype=bool)
        outside[y0:y1, x0:x1] = False
        assert not arrays["parts"][index][outside].any()


def test_npz_of_empty_result_keeps_image_size() -> None:
    arrays = npz_bytes_to_arrays(result_to_npz_bytes(DensePoseResult.empty(6, 9)))
    assert arrays["boxes_xyxy"].shape == (0, 4) and arrays["scores"].shape == (0,)
    for name in ("masks", "parts", "u", "v"):
        assert arrays[name].shape == (0, 6, 9), name


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
