"""The whole network on the tiny config: shapes, the stages forward walks, empty images,
backends, ablation switches."""

import dataclasses

import pytest
import torch

from model.config import NUM_IUV_LOGITS, tiny_config
from model.inference.predictor import Predictor
from model.network.ddp import (
    DDP,
    InstanceCoverage,
    InstanceLocations,
    build_ddp,
    use_sparse_backend,
)


def _config(**iuv):
    config = tiny_config()
    # Accept every location as a person so that the untrained network exercises all stages.
    permissive = dataclasses.replace(
        config.instance,
        candidate_score_threshold=0.0,
        detection_score_threshold=0.0,
        max_detections=4,
        mask_threshold=0.3,
    )
    return config.replace(instance=permissive, iuv=dataclasses.replace(config.iuv, **iuv))


def _forward(model, batch=2, height=96, width=128):
    torch.manual_seed(1)
    images = torch.randn(batch, 3, height, width)
    sizes = torch.tensor([[height, width]] * batch)
    with torch.inference_mode():
        return model.eval()(images, sizes)


def test_forward_shapes_and_suppressed_background():
    model = build_ddp(_config())
    out = _forward(model)
    n = len(out.detections)
    assert 0 < n <= 8
    assert out.detections.mask_logits.shape == (n, 2, 24, 32)
    assert out.iuv_logits.shape == (2, NUM_IUV_LOGITS, 24, 32)
    assert out.active.shape == (2, 24, 32) and out.active.any()
    assert (out.iuv_logits[~out.active[:, None].expand_as(out.iuv_logits)] == 0).all()
    # M_fg is the union of each image's instance regions.
    regions = model.instance_regions(out.detections.mask_logits[:, 0].sigmoid())
    for b in range(2):
        assert torch.equal(out.active[b], regions[out.detections.image_index == b].any(0))


def test_forward_returns_the_maps_of_dense_pose_at_its_detections(monkeypatch):
    calls = []
    dense_pose = DDP.dense_pose

    def recording(self, x_agg, instances, **kwargs):
        calls.append((instances, kwargs, dense_pose(self, x_agg, instances, **kwargs)))
        return calls[-1][-1]

    monkeypatch.setattr(DDP, "dense_pose", recording)
    out = _forward(build_ddp(_config()))
    [(instances, kwargs, maps)] = calls
    assert kwargs == {}  # regions from the predicted masks, not from a given coverage
    assert torch.equal(instances.image_index, out.detections.image_index)
    assert out.detections.mask_logits is maps.mask_logits
    assert out.iuv_logits is maps.iuv_logits and out.active is maps.active


def test_dense_pose_given_the_predicted_masks_as_coverage_is_inference():
    # Training gives dense_pose the GT coverage; given the M_ins probabilities instead, it
    # computes exactly what inference does.
    model = build_ddp(_config()).eval()
    torch.manual_seed(1)
    images = torch.randn(2, 3, 96, 128)
    image_index, location = torch.tensor([0, 0, 1]), torch.tensor([5, 40, 17])
    with torch.inference_mode():
        x_agg, head = model.features(images)
        instances = InstanceLocations(
            params=head.controller[image_index, location],
            centers_xy=head.locations[location],
            strides=head.location_strides[location],
            image_index=image_index,
        )
        inferred = model.dense_pose(x_agg, instances)
        given = model.dense_pose(
            x_agg,
            instances,
            coverage=InstanceCoverage(
                fractions=inferred.mask_logits[:, 0].sigmoid(), image_index=image_index
            ),
        )
        nobody = model.dense_pose(
            x_agg,
            instances,
            coverage=InstanceCoverage(
                fractions=torch.zeros(0, 24, 32), image_index=torch.zeros(0, dtype=torch.int64)
            ),
        )
    assert inferred.mask_logits.shape == (3, 2, 24, 32)
    assert inferred.regions.shape == (3, 24, 32) and inferred.active.shape == (2, 24, 32)
    assert inferred.iuv_logits.shape == (2, NUM_IUV_LOGITS, 24, 32)
    assert inferred.active.any()
    for name in ("mask_logits", "regions", "active", "iuv_logits"):
        assert torch.equal(getattr(given, name), getattr(inferred, name)), name
    # A coverage of nobody: the same mask heads, no region, nothing active, zero IUV logits.
    assert torch.equal(nobody.mask_logits, inferred.mask_logits)
    assert nobody.regions.shape == (0, 24, 32) and not nobody.active.any()
    assert (nobody.iuv_logits == 0).all()


def test_instance_regions_threshold_then_dilate_one_cell():
    model = build_ddp(tiny_config())
    probabilities = torch.zeros(2, 6, 6)
    probabilities[0, 2, 3] = 0.9
    probabilities[1, 0, 0] = 0.4  # below the 0.5 threshold
    regions = model.instance_regions(probabilities)
    expected = torch.zeros(2, 6, 6, dtype=torch.bool)
    expected[0, 1:4, 2:5] = True
    assert torch.equal(regions, expected)


def test_without_background_suppression_every_site_is_active():
    out = _forward(build_ddp(_config(suppress_background=False)))
    assert out.active.all()


@pytest.mark.parametrize("norm", ["ian", "image"])
def test_sparse_backends_agree_on_the_whole_network(norm):
    model = build_ddp(_config(norm=norm))
    reference = _forward(model)
    use_sparse_backend(model, "dense")
    dense = _forward(model)
    torch.testing.assert_close(dense.iuv_logits, reference.iuv_logits, rtol=1e-4, atol=1e-4)


def test_untrained_default_network_finds_nobody_and_says_so():
    predictor = Predictor.untrained(tiny_config(), device="cpu")
    results = predictor([torch.randint(0, 255, (70, 90, 3), dtype=torch.uint8).numpy()])
    assert len(results) == 1 and len(results[0]) == 0
    assert results[0].masks.shape == (0, 70, 90)
    assert predictor([]) == []
