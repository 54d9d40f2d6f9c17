"""The composed objective: every term present, weighted as the paper says, connected when
there is nobody, computed on the stages inference runs, and the I/U/V losses only at points the
IUV branch computes."""

import dataclasses
import math

import pytest
import torch
from toy_scenes import make_toy_batch

from model.config import NUM_PART_CLASSES, tiny_config
from model.network.ddp import DDP, build_ddp
from model.training.objective import _active_points, compute_losses

TERMS = {"fcos_cls", "fcos_box", "fcos_ctr", "mask_ins", "mask_dp", "part", "uv", "smooth"}


def test_zero_person_batch_gives_connected_finite_losses():
    config = tiny_config()
    model = build_ddp(config)
    images, targets = make_toy_batch([0, 1], num_people=0)
    losses = compute_losses(model, images, targets, config)
    assert set(losses) == TERMS | {"total"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert any(p.grad is not None for p in model.parameters())


def test_losses_train_the_iuv_logits_of_the_stages_inference_runs(monkeypatch):
    # With DDP.dense_pose (what forward runs after detection) made to return zero IUV logits,
    # L_I is ln K at every point and L_s vanishes: the IUV logits trained on are its own.
    config = tiny_config()
    model = build_ddp(config)
    images, targets = make_toy_batch([3, 4])
    real = compute_losses(
        model, images, targets, config, generator=torch.Generator().manual_seed(0)
    )
    assert set(real) == TERMS | {"total"}
    assert all(torch.isfinite(v) for v in real.values())
    assert real["part"].item() != pytest.approx(math.log(NUM_PART_CLASSES))
    assert real["smooth"].item() > 0

    dense_pose = DDP.dense_pose

    def zero_iuv(self, *args, **kwargs):
        maps = dense_pose(self, *args, **kwargs)
        return dataclasses.replace(maps, iuv_logits=torch.zeros_like(maps.iuv_logits))

    monkeypatch.setattr(DDP, "dense_pose", zero_iuv)
    forced = compute_losses(
        model, images, targets, config, generator=torch.Generator().manual_seed(0)
    )
    assert forced["part"].item() == pytest.approx(math.log(NUM_PART_CLASSES))
    assert forced["smooth"].item() == 0
    for name in ("fcos_cls", "fcos_box", "fcos_ctr", "mask_ins", "mask_dp"):
        assert torch.equal(forced[name], real[name]), name


def test_loss_weights_scale_their_terms():
    config = tiny_config()
    model = build_ddp(config)
    images, targets = make_toy_batch([3, 4])
    base = compute_losses(
        model, images, targets, config, generator=torch.Generator().manual_seed(0)
    )
    doubled = config.replace(
        loss=dataclasses.replace(
            config.loss, mask_weight=10.0, uv_weight=20.0, smoothness_weight=2.0
        )
    )
    scaled = compute_losses(
        model, images, targets, doubled, generator=torch.Generator().manual_seed(0)
    )
    for name in ("mask_ins", "mask_dp", "uv", "smooth"):
        torch.testing.assert_close(scaled[name], 2 * base[name])
    torch.testing.assert_close(scaled["part"], base["part"])


def test_points_outside_the_foreground_carry_no_iuv_loss():
    _, targets = make_toy_batch([5])
    active = torch.zeros(1, 32, 40, dtype=torch.bool)
    active[0, :, :20] = True  # only the left half of the 128x160 image (x < 80 px)
    image, xy, part, uv = _active_points(targets, active)
    all_xy = targets[0].point_xy
    assert len(xy) == int((all_xy[:, 0] < 80).sum()) and (xy[:, 0] < 80).all()
    assert (image == 0).all() and len(part) == len(uv) == len(xy)
