"""Post-processing on hand-made logits: charts, resampling to image pixels, empty images."""

import torch

from model.config import NUM_PART_CLASSES
from model.inference.postprocess import charts_from_logits, to_results
from model.inference.preprocess import PreparedBatch
from model.structures import DDPOutput, Detections, integer_boxes

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


def _whole_image_reference(output, batch, mask_threshold):
    """Post-processing without windows: every mask resampled over the whole image and every
    person's charts over the whole box (the definition the windowed code must reproduce)."""
    from torchvision.ops import roi_align

    height, width = (int(v) for v in batch.original_sizes[0])
    scale = float(batch.scales[0])
    dets = output.detections
    boxes = dets.boxes_xyxy / scale
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)

    def resample(logits, box, size):
        rois = torch.tensor([[0.0, *box]])
        return roi_align(
            logits, rois, size, spatial_scale=scale / 4, sampling_ratio=1, aligned=True
        )

    masks, parts, uv = [], [], []
    for i, (x0, y0, x1, y1) in enumerate(integer_boxes(boxes, height, width).tolist()):
        whole = resample(dets.mask_logits[i : i + 1, :1], [0, 0, width, height], (height, width))
        masks.append(whole[0, 0].sigmoid() > mask_threshold)
        size = (y1 - y0, x1 - x0)
        iuv = resample(output.iuv_logits[:1], [x0, y0, x1, y1], size)[0]
        dp = resample(dets.mask_logits[i : i + 1, 1:], [x0, y0, x1, y1], size)[0, 0]
        person_parts, person_uv = charts_from_logits(iuv, dp, mask_threshold=mask_threshold)
        parts.append(person_parts)
        uv.append(person_uv)
    return torch.stack(masks), parts, uv


def test_windowed_resampling_equals_resampling_everything():
    # Blobs of positive mask logits at random places and sizes, some at the map's border, on
    # random charts; image 97x131 at scale 0.66 (network input 64x87, logits 16x22).
    generator = torch.Generator().manual_seed(0)
    height, width, scale = 97, 131, 0.66
    h, w, n = 16, 22, 12
    mask_logits = torch.full((n, 2, h, w), -4.0)
    for i in range(n):
        y0, x0 = torch.randint(0, h - 2, (2,), generator=generator).tolist()
        dy, dx = torch.randint(1, 8, (2,), generator=generator).tolist()
        mask_logits[i, :, y0 : y0 + dy, x0 : x0 + dx] = 4.0
        mask_logits[i] += torch.randn(2, h, w, generator=generator)
    mask_logits[-1] = -4.0  # a person whose masks are empty everywhere
    boxes = torch.rand(n, 2, generator=generator) * torch.tensor([60.0, 40.0])
    boxes = torch.cat([boxes, boxes + 5 + torch.rand(n, 2, generator=generator) * 40], 1)
    detections = Detections(torch.zeros(n, dtype=torch.long), boxes, torch.rand(n), mask_logits)
    iuv = torch.randn(1, 3 * K, h, w, generator=generator)
    output = DDPOutput(
        detections, iuv, torch.ones(1, h, w, dtype=torch.bool), torch.tensor([[64, 87]])
    )
    batch = PreparedBatch(
        images=torch.zeros(1, 3, 64, 96),
        image_sizes=torch.tensor([[64, 87]]),
        original_sizes=torch.tensor([[height, width]]),
        scales=torch.tensor([scale]),
    )
    (result,) = to_results(output, batch, mask_threshold=0.5)
    masks, parts, uv = _whole_image_reference(output, batch, 0.5)
    assert masks.any() and not masks[-1].any()
    assert (result.masks != masks).sum() <= 2  # float rounding at the threshold, at most
    for i in range(n):
        assert (result.parts[i] != parts[i]).sum() <= 2
        same = result.parts[i] == parts[i]
        torch.testing.assert_close(result.uv[i][:, same], uv[i][:, same], atol=1e-5, rtol=0)
