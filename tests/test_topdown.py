"""The top-down timing reference (``benchmarks.topdown``): its shapes, its per-person cost
structure (the heads see exactly the N forced boxes, the box stage runs once per image),
the paste back to image pixels, and that it sits on DDP's own backbone at the usual sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.topdown import (
    DENSEPOSE_CHANNELS,
    TopDownConfig,
    TopDownPredictor,
    build_topdown,
    to_results,
)
from model.config import get_config
from model.inference.preprocess import image_to_tensor, prepare_batch
from model.network.ddp import build_ddp

SMALL = TopDownConfig(
    rpn_pre_nms_top_k=50, proposals=20, box_fc=32, detections=10, mask_convs=1,
    mask_channels=8, densepose_convs=2, densepose_channels=8,
)  # fmt: skip
"""Same structure as the default, narrow enough for tests."""
HEIGHT, WIDTH = 96, 128


@pytest.fixture(scope="module")
def predictor() -> TopDownPredictor:
    torch.manual_seed(0)
    config = get_config("tiny")
    return TopDownPredictor(
        build_topdown(config, SMALL), config.input, mask_threshold=config.instance.mask_threshold
    )


def boxes(count: int) -> torch.Tensor:
    """``count`` boxes (x0, y0, x1, y1) inside a HEIGHT x WIDTH image."""
    x0 = torch.arange(count, dtype=torch.float32) * 7 % (WIDTH - 40)
    y0 = torch.arange(count, dtype=torch.float32) * 5 % (HEIGHT - 50)
    return torch.stack([x0, y0, x0 + 30 + count, y0 + 45], dim=1)


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


class Calls:
    """Records the first dimension of every input a module's forward gets."""

    def __init__(self, module: nn.Module) -> None:
        self.batch_sizes: list[int] = []
        self.handle = module.register_forward_pre_hook(self.record)

    def record(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.batch_sizes.append(int(args[0].shape[0]))


def test_forward_shapes_for_a_batch(predictor: TopDownPredictor) -> None:
    model = predictor.model
    batch = prepare_batch([image_to_tensor(image(0)), image_to_tensor(image(1))], predictor.input)
    per_image = [boxes(3) * batch.scales[0], boxes(0)]
    with torch.inference_mode():
        output = model(batch.images, per_image, batch.image_sizes)
    assert output.image_index.tolist() == [0, 0, 0]
    assert output.boxes_xyxy.shape == (3, 4)
    assert output.mask_logits.shape == (3, 1, SMALL.mask_size, SMALL.mask_size)
    size = SMALL.densepose_size
    assert (SMALL.mask_size, size) == (28, 56)
    assert output.densepose_logits.shape == (3, DENSEPOSE_CHANNELS, size, size)
    assert DENSEPOSE_CHANNELS == 77
    assert len(output.box_detections) == 2
    assert all(0 <= found <= SMALL.detections for found in output.box_detections)
    with pytest.raises(ValueError, match="one box tensor per image"):
        model(batch.images, per_image[:1], batch.image_sizes)


def test_heads_run_once_per_forced_box_and_the_box_stage_once(
    predictor: TopDownPredictor,
) -> None:
    model = predictor.model
    watched = {
        "densepose": Calls(model.densepose_head.layers),
        "mask": Calls(model.mask_head.layers),
        "box_head": Calls(model.box_stage.roi_heads.box_head),
    }
    try:
        found = [len(predictor([image()], [boxes(count)])[0]) for count in (1, 6)]
    finally:
        for calls in watched.values():
            calls.handle.remove()
    assert found == [1, 6]
    assert watched["densepose"].batch_sizes == [1, 6]
    assert watched["mask"].batch_sizes == [1, 6]
    # the box head sees the RPN's proposals, however many persons are forced
    assert watched["box_head"].batch_sizes == [SMALL.proposals] * 2


def test_paste_gives_full_image_masks_and_box_crops(predictor: TopDownPredictor) -> None:
    forced = boxes(2) + torch.tensor([0.3, 0.6, 0.2, 0.5])
    (result,) = predictor([image()], [forced])
    assert result.masks.shape == (2, HEIGHT, WIDTH) and result.masks.dtype == torch.bool
    assert torch.allclose(result.boxes_xyxy, forced, atol=1e-4)
    assert torch.equal(result.scores, torch.ones(2))
    for (x0, y0, x1, y1), parts, uv in zip(
        result.integer_boxes().tolist(), result.parts, result.uv, strict=True
    ):
        assert parts.shape == (y1 - y0, x1 - x0) and parts.dtype == torch.uint8
        assert uv.shape == (2, y1 - y0, x1 - x0)
        assert int(parts.max()) <= 24 and float(uv.min()) >= 0 and float(uv.max()) <= 1
        assert torch.all(uv[:, parts == 0] == 0)


def test_an_image_without_persons_gives_an_empty_result(predictor: TopDownPredictor) -> None:
    (result,) = predictor([image()], [torch.zeros(0, 4)])
    assert len(result) == 0 and result.masks.shape == (0, HEIGHT, WIDTH)
    batch = prepare_batch([image_to_tensor(image())], predictor.input)
    with torch.inference_mode():
        output = predictor.model(batch.images, [torch.zeros(0, 4)], batch.image_sizes)
    assert output.densepose_logits.shape[0] == 0
    assert len(to_results(output, batch, mask_threshold=0.5)[0]) == 0


def test_default_reference_is_ddp_default_backbone_with_the_usual_head_sizes() -> None:
    config = get_config("default")
    reference = build_topdown(config)
    ddp = build_ddp(config, load_pretrained=False)
    shapes = [tuple(p.shape) for p in reference.backbone.state_dict().values()]
    assert shapes == [tuple(p.shape) for p in ddp.backbone.state_dict().values()]
    convs = [m for m in reference.densepose_head.layers.convs if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8
    assert convs[0].in_channels == config.backbone.fpn_channels
    assert all((c.out_channels, c.kernel_size) == (512, (3, 3)) for c in convs)
    deconv = reference.densepose_head.layers.deconv
    assert (deconv.out_channels, deconv.stride) == (77, (2, 2))
    mask_convs = [m for m in reference.mask_head.layers.convs.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in mask_convs] == [256] * 4
    assert reference.densepose_head.pooler.output_size == (14, 14)
    assert reference.box_stage.roi_heads.box_head.fc6.out_features == 1024
