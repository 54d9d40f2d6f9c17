"""Mask overlaps and duplicate suppression against brute-force float64 references."""

from __future__ import annotations

import math

import pytest
import torch

from model.network.detection import mask_overlaps, matrix_nms_decay, suppress_duplicate_masks


def _random_masks(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(count, 12, 16, dtype=torch.bool)
    for i in range(count):
        y0, x0 = (int(v) for v in torch.randint(0, 8, (2,), generator=generator))
        h, w = (int(v) for v in torch.randint(2, 6, (2,), generator=generator))
        masks[i, y0 : y0 + h, x0 : x0 + w] = True
    return masks


def test_mask_overlaps_match_pairwise_counts() -> None:
    masks = _random_masks(6, seed=1)
    masks[5] = False  # an empty mask overlaps nothing
    iou, over_smaller = mask_overlaps(masks)
    for i in range(6):
        for j in range(6):
            a, b = masks[i], masks[j]
            inter = int((a & b).sum())
            union = int((a | b).sum())
            smaller = min(int(a.sum()), int(b.sum()))
            assert float(iou[i, j]) == pytest.approx(inter / union if union else 0.0)
            assert float(over_smaller[i, j]) == pytest.approx(inter / smaller if smaller else 0.0)


def test_matrix_nms_decay_matches_its_definition_in_float64() -> None:
    iou, _ = mask_overlaps(_random_masks(7, seed=2))
    sigma = 2.0
    decay = matrix_nms_decay(iou, sigma=sigma)
    values = iou.double().tolist()
    for j in range(7):
        factors = [1.0]
        for i in range(j):
            compensation = max([values[k][i] for k in range(i)], default=0.0)
            factors.append(math.exp(-sigma * (values[i][j] ** 2 - compensation**2)))
        assert float(decay[j]) == pytest.approx(min(factors), rel=1e-5)
    assert float(decay[0]) == 1.0


def test_hard_suppression_drops_a_mask_inside_a_better_one_only() -> None:
    person = torch.zeros(3, 20, 20)
    person[0, 2:18, 5:15] = 1.0  # the person
    person[1, 4:10, 6:14] = 1.0  # their torso: inside the person, lower score
    person[2, 2:18, 15:20] = 1.0  # someone beside them
    scores = torch.tensor([0.9, 0.5, 0.6])
    image_index = torch.zeros(3, dtype=torch.int64)
    kept, kept_scores = suppress_duplicate_masks(
        person, scores, image_index, method="hard", threshold=0.5, sigma=2.0, score_threshold=0.3
    )
    assert kept.tolist() == [0, 2]
    assert torch.equal(kept_scores, scores[[0, 2]])


def test_suppression_never_crosses_images_and_none_keeps_all() -> None:
    masks = torch.ones(2, 8, 8)
    scores = torch.tensor([0.9, 0.8])
    two_images = torch.tensor([0, 1])
    for method in ("hard", "matrix"):
        kept, _ = suppress_duplicate_masks(
            masks, scores, two_images, method=method, threshold=0.5, sigma=2.0, score_threshold=0.3
        )
        assert kept.tolist() == [0, 1]
    kept, _ = suppress_duplicate_masks(
        masks, scores, torch.zeros(2, dtype=torch.int64), method="none",
        threshold=0.5, sigma=2.0, score_threshold=0.3,
    )  # fmt: skip
    assert kept.tolist() == [0, 1]


def test_matrix_suppression_decays_an_exact_duplicate_below_the_threshold() -> None:
    masks = torch.zeros(2, 8, 8)
    masks[:, 2:6, 2:6] = 1.0
    kept, kept_scores = suppress_duplicate_masks(
        masks, torch.tensor([0.9, 0.6]), torch.zeros(2, dtype=torch.int64),
        method="matrix", threshold=0.5, sigma=2.0, score_threshold=0.3,
    )  # fmt: skip
    assert kept.tolist() == [0]  # 0.6 · exp(-2) = 0.08
    assert float(kept_scores[0]) == pytest.approx(0.9)


def test_empty_detections_stay_empty() -> None:
    kept, scores = suppress_duplicate_masks(
        torch.zeros(0, 8, 8), torch.zeros(0), torch.zeros(0, dtype=torch.int64),
        method="matrix", threshold=0.5, sigma=2.0, score_threshold=0.3,
    )  # fmt: skip
    assert kept.numel() == 0 and scores.numel() == 0


def test_ddp_forward_with_mask_nms_keeps_the_suppression_of_its_own_masks() -> None:
    """Mask NMS inside ``DDP.forward`` equals suppressing the no-NMS detections' own masks, and
    M_fg is then the union of the kept persons' regions only."""
    import dataclasses

    from model.inference.images import read_image_rgb
    from model.inference.predictor import Predictor
    from model.paths import CHECKOUT, DEFAULT_WEIGHTS

    predictor = Predictor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu")
    model = predictor.model
    image = read_image_rgb(CHECKOUT / "examples" / "synthetic_scene.jpg")
    base = model.detection
    low = dataclasses.replace(base, detection_score_threshold=0.1)  # many overlapping boxes
    try:
        model.detection = dataclasses.replace(low, mask_nms="none")
        plain, _ = predictor.forward([image])
        probabilities = plain.detections.mask_logits[:, 0].sigmoid()
        for method in ("hard", "matrix"):
            model.detection = dataclasses.replace(low, mask_nms=method)
            kept, scores = model.suppress_duplicates(
                probabilities, plain.detections.scores, plain.detections.image_index
            )
            output, _ = predictor.forward([image])
            assert 0 < len(kept) < len(plain.detections.scores)
            boxes = plain.detections.boxes_xyxy[kept]
            torch.testing.assert_close(output.detections.boxes_xyxy, boxes)
            torch.testing.assert_close(output.detections.scores, scores)
            torch.testing.assert_close(
                output.detections.mask_logits, plain.detections.mask_logits[kept]
            )
            regions = model.instance_regions(probabilities[kept])
            assert torch.equal(output.active[0], regions.any(dim=0))
    finally:
        model.detection = base


def test_matrix_suppression_keeps_bf16_scores_in_bf16() -> None:
    """Under CPU bf16 autocast (runtime ``torch-bf16``) the scores come in bf16 and the mask
    overlaps in float32: the decayed scores are those of float32, rounded to bf16."""
    masks = torch.zeros(3, 8, 8)
    masks[:, 2:6, 2:6] = 1.0
    masks[2, 2:6, 2:4] = 0.0  # half of the others: a partial duplicate
    scores = torch.tensor([0.9, 0.6, 0.8])
    args = (torch.zeros(3, dtype=torch.int64),)
    options = {"method": "matrix", "threshold": 0.5, "sigma": 2.0, "score_threshold": 0.3}
    kept32, scores32 = suppress_duplicate_masks(masks, scores, *args, **options)  # type: ignore[arg-type]
    kept16, scores16 = suppress_duplicate_masks(masks, scores.bfloat16(), *args, **options)  # type: ignore[arg-type]
    assert scores16.dtype == torch.bfloat16
    assert kept16.tolist() == kept32.tolist() == [0, 2]
    torch.testing.assert_close(scores16.float(), scores32, atol=1e-2, rtol=1e-2)
