"""Post-processing on hand-made logits: charts, resampling to image pixels, empty images."""

import torch

from model.config import NUM_PART_CLASSES
from model.postprocess import charts_from_logits, to_results
from model.preprocess import PreparedBatch
from model.structures import DDPOutput, Detections

K = NUM_PART_CLASSES


def _iuv_logits(height: int, width: int) -> torch.Tensor:
    """Part 5 on the left half, part 7 on the right; U = 0.25, V = 0.75 for part 5, U = V = 0.5
    for part 7; large margins so bilinear resampling cannot flip the argmax."""
    logits = torch.zeros(3 * K, height, width)
    logits[5, :, : width // 2] = 10.0
    logits[7, :, width // 2 :] = 10.0
    logits[K + 5], logits[2 * K + 5] = 0.25, 0.75
    logits[K + 7], logits[2 * K + 7] = 0.5, 0.5
    return logits


def test_charts_take_argmax_inside_dp_mask_and_gather_uv():
    logits = _iuv_logits(4, 6)
    dp = torch.full((4, 6), 5.0)
    dp[0, 0] = -5.0
    parts, uv = charts_from_logits(logits, dp, mask_threshold=0.5)
    assert parts.dtype == torch.uint8
    assert parts[1, 0] == 5 and parts[1, 5] == 7 and parts[0, 0] == 0
    torch.testing.assert_close(uv[:, 1, 0], torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(uv[:, 2, 5], torch.tensor([0.5, 0.5]))
    assert uv[:, 0, 0].abs().sum() == 0


def _batch(height, width, scale):
    padded = (32, 32)
    return PreparedBatch(
        images=torch.zeros(2, 3, *padded),
        image_sizes=torch.tensor([[round(height * scale), round(width * scale)]] * 2),
        original_sizes=torch.tensor([[height, width]] * 2),
        scales=torch.tensor([scale, scale]),
    )


def test_results_are_in_original_pixels_and_empty_images_are_normal():
    # Batch of 2: image 0 has one person, image 1 none. Network input 32x32 = image at scale 2.
    height, width, scale = 16, 16, 2.0
    mask_logits = torch.full((1, 2, 8, 8), -10.0)
    mask_logits[0, :, 2:6, 1:7] = 10.0  # the person at 1/4 of the input = 1/2 of the image
    detections = Detections(
        image_index=torch.tensor([0]),
        boxes_xyxy=torch.tensor([[4.0, 8.0, 28.0, 24.0]]),
        scores=torch.tensor([0.9]),
        mask_logits=mask_logits,
    )
    iuv = torch.stack([_iuv_logits(8, 8), torch.zeros(3 * K, 8, 8)])
    output = DDPOutput(
        detections, iuv, torch.ones(2, 8, 8, dtype=torch.bool), torch.tensor([[32, 32]] * 2)
    )
    results = to_results(output, _batch(height, width, scale), mask_threshold=0.5)
    assert len(results) == 2 and len(results[1]) == 0
    assert results[1].masks.shape == (0, height, width)
    person = results[0]
    torch.testing.assert_close(person.boxes_xyxy, torch.tensor([[2.0, 4.0, 14.0, 12.0]]))
    assert person.masks.shape == (1, height, width)
    # M_ins covers input cells rows 2..5, cols 1..6 -> image pixels rows 4..11, cols 2..13.
    expected_mask = torch.zeros(height, width, dtype=torch.bool)
    expected_mask[4:12, 2:14] = True
    assert torch.equal(person.masks[0], expected_mask)
    assert person.parts[0].shape == (8, 12) and person.uv[0].shape == (2, 8, 12)
    assert person.integer_boxes().tolist() == [[2, 4, 14, 12]]
    # Image columns < 8 lie in the left half of the logit map (part 5), >= 8 in part 7.
    assert (person.parts[0][:, : 8 - 2] == 5).all() and (person.parts[0][:, 8 - 2 :] == 7).all()
    torch.testing.assert_close(person.uv[0][:, 0, 0], torch.tensor([0.25, 0.75]))
