"""Person ids across frames: stable for a moving pair, new ids for newcomers, never reused."""

import numpy as np
import pytest

from model.video.tracking import PersonTracker, mask_iou


def box_masks(boxes, height=48, width=96):
    masks = np.zeros((len(boxes), height, width), dtype=bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = True
    return masks


def test_a_moving_pair_keeps_its_ids_whatever_the_detection_order():
    tracker = PersonTracker(stride=2)
    first = tracker.update(box_masks([(4, 8, 24, 40), (60, 8, 80, 40)]))
    assert first.tolist() == [1, 2]
    for t in range(1, 8):
        left, right = (4 + 3 * t, 8, 24 + 3 * t, 40), (60 - 2 * t, 10, 80 - 2 * t, 42)
        order = [right, left] if t % 2 else [left, right]  # the network's order may change
        ids = tracker.update(box_masks(order))
        assert ids.tolist() == ([2, 1] if t % 2 else [1, 2])


def test_newcomers_get_new_ids_and_ids_are_never_reused():
    tracker = PersonTracker(max_age=1)
    person = (10, 10, 30, 40)
    assert tracker.update(box_masks([person])).tolist() == [1]
    assert tracker.update(box_masks([person, (60, 5, 80, 30)])).tolist() == [1, 2]
    assert tracker.update(box_masks([])).tolist() == []
    assert tracker.update(box_masks([person])).tolist() == [1]  # missed 1 frame <= max_age
    for _ in range(2):
        tracker.update(box_masks([]))
    assert tracker.update(box_masks([person])).tolist() == [3]  # track 1 expired; 1, 2 unused


def test_low_overlap_is_not_a_match():
    tracker = PersonTracker(iou_threshold=0.5)
    tracker.update(box_masks([(0, 0, 20, 20)]))
    assert tracker.update(box_masks([(12, 0, 32, 20)])).tolist() == [2]  # IoU 8/32 = 0.25


def test_mask_iou():
    a = box_masks([(0, 0, 10, 10), (0, 0, 0, 0)])
    b = box_masks([(5, 0, 15, 10)])
    np.testing.assert_allclose(mask_iou(a, b), [[50 / 150], [0.0]])
    assert mask_iou(a[:0], b).shape == (0, 1)


def test_tracker_validates():
    with pytest.raises(ValueError):
        PersonTracker(iou_threshold=0)
    with pytest.raises(ValueError, match="bool"):
        PersonTracker().update(np.zeros((1, 4, 4), np.uint8))
