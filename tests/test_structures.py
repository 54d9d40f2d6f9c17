import pytest
import torch

from model.structures import DensePoseResult, integer_boxes


def _result() -> DensePoseResult:
    return DensePoseResult(
        boxes_xyxy=torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.2, 1.5, 3.1, 4.0]]),
        scores=torch.tensor([0.9, 0.4]),
        masks=torch.zeros(2, 5, 5, dtype=torch.bool),
        parts=[torch.full((2, 2), 1, dtype=torch.uint8), torch.full((3, 3), 2, dtype=torch.uint8)],
        uv=[torch.zeros(2, 2, 2), torch.ones(2, 3, 3)],
    )


def test_select_keeps_the_persons_in_the_given_order():
    picked = _result().select([1])
    assert len(picked) == 1 and picked.scores.tolist() == pytest.approx([0.4])
    assert picked.parts[0].shape == (3, 3) and bool((picked.uv[0] == 1).all())
    assert len(_result().select([])) == 0


def test_integer_boxes_cover_the_float_boxes_and_stay_in_the_image():
    boxes = integer_boxes(torch.tensor([[1.2, 1.5, 3.1, 4.0], [-2.0, 3.0, 9.0, 3.0]]), 5, 5)
    assert boxes.tolist() == [[1, 1, 4, 4], [0, 3, 5, 4]]
