"""The composed objective: every term present, weighted as the paper says, connected when
there is nobody, and the I/U/V losses only at points the IUV branch computes."""

import dataclasses

import torch
from toy_scenes import make_toy_batch

from model.config import tiny_config
from model.ddp import build_ddp
from model.training import _active_points, compute_losses

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
