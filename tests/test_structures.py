import pytest
import torch

from model.config import NUM_IUV_LOGITS
from model.inference.postprocess import to_results
from model.inference.preprocess import PreparedBatch
from model.structures import DDPOutput, DensePoseResult, Detections, integer_boxes


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


def _two_images() -> tuple[DDPOutput, PreparedBatch]:
    """A batch of 2 (input 32x32 = images of 16x16 and 16x12 at scale 2): persons 0 and 2 in
    image 0, person 1 in image 1."""
    generator = torch.Generator().manual_seed(0)
    detections = Detections(
        image_index=torch.tensor([0, 1, 0]),
        boxes_xyxy=torch.tensor([[2.0, 2.0, 20.0, 30.0], [4.0, 0.0, 24.0, 16.0], [0, 8, 32, 32]]),
        scores=torch.tensor([0.9, 0.8, 0.5]),
        mask_logits=torch.randn(3, 2, 8, 8, generator=generator) * 4,
    )
    output = DDPOutput(
        detections=detections,
        iuv_logits=torch.randn(2, NUM_IUV_LOGITS, 8, 8, generator=generator),
        active=torch.randn(2, 8, 8, generator=generator) > 0,
        image_sizes=torch.tensor([[32, 32], [32, 24]]),
    )
    batch = PreparedBatch(
        images=torch.randn(2, 3, 32, 32, generator=generator),
        image_sizes=torch.tensor([[32, 32], [32, 24]]),
        original_sizes=torch.tensor([[16, 16], [16, 12]]),
        scales=torch.tensor([2.0, 2.0]),
    )
    return output, batch


def test_the_detections_of_one_image_are_a_batch_of_one():
    detections = _two_images()[0].detections
    mine = detections.of_image(0)
    assert mine.image_index.tolist() == [0, 0]
    assert torch.equal(mine.boxes_xyxy, detections.boxes_xyxy[[0, 2]])
    assert torch.equal(mine.scores, detections.scores[[0, 2]])
    assert torch.equal(mine.mask_logits, detections.mask_logits[[0, 2]])
    assert detections.of_image(1).image_index.tolist() == [0]


def test_an_image_without_persons_has_empty_detections():
    nobody = _two_images()[0].detections.of_image(2)
    assert len(nobody) == 0
    assert nobody.image_index.shape == (0,) and nobody.boxes_xyxy.shape == (0, 4)
    assert nobody.mask_logits.shape == (0, 2, 8, 8)


def test_the_views_of_an_output_are_its_rows():
    output, _ = _two_images()
    assert len(output) == 2
    for b in range(2):
        view = output.image(b)
        assert len(view) == 1
        assert torch.equal(view.iuv_logits, output.iuv_logits[b : b + 1])
        assert torch.equal(view.active, output.active[b : b + 1])
        assert torch.equal(view.image_sizes, output.image_sizes[b : b + 1])
        assert torch.equal(view.detections.scores, output.detections.of_image(b).scores)
    with pytest.raises(IndexError, match="image 2 of a batch of 2"):
        output.image(2)
    with pytest.raises(IndexError):
        output.image(-1)


@pytest.mark.parametrize(("persons", "per_image"), [([0, 1, 2], [2, 1]), ([0, 2], [2, 0])])
def test_post_processing_each_view_equals_post_processing_the_batch(persons, per_image):
    output, batch = _two_images()
    output.detections = output.detections[torch.tensor(persons)]
    whole = to_results(output, batch, mask_threshold=0.5)
    assert [len(r) for r in whole] == per_image
    for b in range(2):
        (alone,) = to_results(output.image(b), batch.image(b), mask_threshold=0.5)
        assert torch.equal(alone.boxes_xyxy, whole[b].boxes_xyxy)
        assert torch.equal(alone.masks, whole[b].masks)
        assert all(torch.equal(x, y) for x, y in zip(alone.parts, whole[b].parts, strict=True))
        assert all(torch.equal(x, y) for x, y in zip(alone.uv, whole[b].uv, strict=True))
