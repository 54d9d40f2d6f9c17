"""Real-photo scoring rules: one match per person, ignored persons and regions, false ones."""

from __future__ import annotations

import torch

from model.evaluation.photos import score_photo


def _boxes(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def test_a_person_is_found_once_and_a_duplicate_is_false() -> None:
    score = score_photo(
        _boxes([10, 10, 50, 110], [12, 12, 50, 108], [200, 0, 260, 40]),
        torch.tensor([0.9, 0.8, 0.7]),
        person_boxes=[[10, 10, 50, 110]],
        clearly_visible=[True],
    )
    assert (score.found, score.false_detections, score.clearly_visible) == (1, 2, 1)


def test_iou_below_the_threshold_is_no_match() -> None:
    score = score_photo(
        _boxes([10, 10, 50, 58]),  # under half of a 40x100 box: IoU 0.48
        torch.tensor([0.9]),
        person_boxes=[[10, 10, 50, 110]],
        clearly_visible=[True],
    )
    assert (score.found, score.false_detections) == (0, 1)


def test_not_clearly_visible_persons_and_ignore_regions_count_neither_way() -> None:
    score = score_photo(
        _boxes([0, 0, 20, 30], [100, 100, 120, 130], [300, 300, 340, 340]),
        torch.tensor([0.9, 0.8, 0.7]),
        person_boxes=[[0, 0, 20, 30], [500, 500, 520, 530]],
        clearly_visible=[False, False],
        ignore_regions=[[90, 90, 125, 135]],
    )
    assert score.clearly_visible == 0
    assert (score.found, score.ignored_detections, score.false_detections) == (0, 2, 1)


def test_the_better_detection_takes_the_person() -> None:
    score = score_photo(
        _boxes([10, 10, 50, 110], [10, 10, 50, 100]),
        torch.tensor([0.4, 0.9]),
        person_boxes=[[10, 10, 50, 110]],
        clearly_visible=[True],
    )
    assert (score.found, score.false_detections) == (1, 1)


def test_a_person_free_photo_with_no_detections_is_clean() -> None:
    score = score_photo(torch.zeros(0, 4), torch.zeros(0), person_boxes=[], clearly_visible=[])
    assert score == score.__class__(0, 0, 0, 0)
    score = score_photo(_boxes([1, 1, 5, 5]), torch.tensor([0.5]), [], [])
    assert score.false_detections == 1
