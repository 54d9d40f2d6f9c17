import math

import pytest
import torch
import torch.nn.functional as F

from model.network.fcos_head import fcos_locations
from model.training.fcos_targets import FcosTargets, assign_fcos_targets
from model.training.losses import (
    dice_loss,
    fcos_losses,
    part_loss,
    sample_at_points,
    smoothness_loss,
    uv_loss,
)

K = 25


def _assert_connected_zero(loss: torch.Tensor, *leaves: torch.Tensor) -> None:
    assert loss.ndim == 0 and loss.item() == 0.0
    loss.backward()
    for leaf in leaves:
        assert leaf.grad is not None and (leaf.grad == 0).all()


def _negative_targets(num_locations: int) -> FcosTargets:
    return FcosTargets(
        matched=torch.full((num_locations,), -1),
        box_ltrb=torch.zeros(num_locations, 4),
        centerness=torch.zeros(num_locations),
    )


# --------------------------------------------------------------------------- FCOS


def test_fcos_zero_gt_is_finite_and_connected() -> None:
    locations = torch.cat(fcos_locations([(4, 4), (2, 2)], (8, 16), "cpu"))  # [20, 2]
    cls_logits = torch.randn(2, 20, requires_grad=True)
    box_ltrb = torch.rand(2, 20, 4, requires_grad=True)
    ctr_logits = torch.randn(2, 20, requires_grad=True)
    losses = fcos_losses(
        cls_logits, box_ltrb, ctr_logits, [_negative_targets(20)] * 2, locations
    )
    assert set(losses) == {"fcos_cls", "fcos_box", "fcos_ctr"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["fcos_box"].item() == 0 and losses["fcos_ctr"].item() == 0
    sum(losses.values()).backward()
    assert cls_logits.grad is not None and torch.isfinite(cls_logits.grad).all()
    assert box_ltrb.grad is not None and (box_ltrb.grad == 0).all()
    assert ctr_logits.grad is not None and (ctr_logits.grad == 0).all()


def test_fcos_perfect_boxes_give_zero_giou() -> None:
    strides = (8, 16)
    locations = fcos_locations([(8, 8), (4, 4)], strides, "cpu")
    boxes = torch.tensor([[10.0, 12.0, 40.0, 50.0], [30.0, 5.0, 60.0, 30.0]])
    targets = assign_fcos_targets(locations, strides, boxes)
    assert (targets.matched >= 0).sum() > 0
    predicted = targets.box_ltrb[None].clone().requires_grad_(True)
    losses = fcos_losses(
        torch.zeros(1, 80), predicted, torch.zeros(1, 80), [targets], torch.cat(locations)
    )
    assert losses["fcos_box"].item() == pytest.approx(0.0, abs=1e-6)
    # Degenerate (zero-size) predictions stay finite.
    losses = fcos_losses(
        torch.zeros(1, 80), torch.zeros(1, 80, 4), torch.zeros(1, 80), [targets],
        torch.cat(locations),
    )
    assert torch.isfinite(losses["fcos_box"]) and losses["fcos_box"].item() > 0


def test_fcos_losses_against_hand_formulas() -> None:
    # Three locations; location 0 and 1 positive, location 2 negative.
    locations = torch.tensor([[0.0, 0.0], [100.0, 100.0], [50.0, 50.0]])
    targets = FcosTargets(
        matched=torch.tensor([0, 1, -1]),
        box_ltrb=torch.tensor([[2.0, 2.0, 2.0, 2.0], [3.0, 1.0, 2.0, 5.0], [0.0, 0.0, 0.0, 0.0]]),
        centerness=torch.tensor([0.5, 1.0, 0.0]),
    )
    cls_logits = torch.tensor([[2.0, -1.0, 0.5]])
    # Location 0 predicts a 2x2 box inside its 4x4 target (IoU = GIoU = 1/4); location 1 is exact.
    box_ltrb = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [3.0, 1.0, 2.0, 5.0], [9.0, 9.0, 9.0, 9.0]]])
    ctr_logits = torch.tensor([[0.3, -0.7, 4.0]])
    alpha, gamma = 0.25, 2.0
    losses = fcos_losses(
        cls_logits, box_ltrb, ctr_logits, [targets], locations,
        focal_alpha=alpha, focal_gamma=gamma,
    )

    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    p = [sigmoid(x) for x in (2.0, -1.0, 0.5)]
    focal_pos = [-alpha * (1 - q) ** gamma * math.log(q) for q in p[:2]]
    focal_neg = -(1 - alpha) * p[2] ** gamma * math.log(1 - p[2])
    assert losses["fcos_cls"].item() == pytest.approx((sum(focal_pos) + focal_neg) / 2)
    assert losses["fcos_box"].item() == pytest.approx((0.75 * 0.5 + 0.0 * 1.0) / 1.5)

    def bce(x: float, y: float) -> float:
        return -(y * math.log(sigmoid(x)) + (1 - y) * math.log(1 - sigmoid(x)))

    assert losses["fcos_ctr"].item() == pytest.approx((bce(0.3, 0.5) + bce(-0.7, 1.0)) / 2)


def test_fcos_losses_validate_shapes() -> None:
    locations = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="box_ltrb"):
        fcos_losses(torch.zeros(1, 5), torch.zeros(1, 5), torch.zeros(1, 5),
                    [_negative_targets(5)], locations)
    with pytest.raises(ValueError, match="targets"):
        fcos_losses(torch.zeros(1, 5), torch.zeros(1, 5, 4), torch.zeros(1, 5),
                    [_negative_targets(4)], locations)


# --------------------------------------------------------------------------- dice


def test_dice_identical_disjoint_and_hand_case() -> None:
    target = torch.zeros(2, 8, 8)
    target[0, 2:6, 2:6] = 1
    target[1, :, :3] = 1
    identical = dice_loss(target * 40 - 20, target)
    assert identical.shape == (2,)
    assert torch.allclose(identical, torch.zeros(2), atol=1e-6)

    disjoint = dice_loss((1 - target) * 40 - 20, target)
    # 1 - (0 + 1) / (|X|^2 + |Y|^2 + 1) with |X|^2 = 64 - |Y|, |Y|^2 = |Y|.
    assert torch.allclose(disjoint, torch.tensor([1 - 1 / 65, 1 - 1 / 65]), atol=1e-6)
    assert (disjoint > 0.98).all()

    # 2x2, p = 0.5 everywhere, one target pixel: 1 - (2*0.5 + 1) / (4*0.25 + 1 + 1) = 1/3.
    hand = dice_loss(torch.zeros(1, 2, 2), torch.tensor([[[True, False], [False, False]]]))
    assert hand.item() == pytest.approx(1 / 3)

    empty = dice_loss(torch.full((1, 4, 4), -20.0), torch.zeros(1, 4, 4))
    assert empty.item() == pytest.approx(0.0, abs=1e-6)


def test_dice_empty_batch_and_shape_check() -> None:
    logits = torch.zeros(0, 4, 4, requires_grad=True)
    loss = dice_loss(logits, torch.zeros(0, 4, 4))
    assert loss.shape == (0,)
    _assert_connected_zero(loss.sum(), logits)
    with pytest.raises(ValueError, match="same shape"):
        dice_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5))


# --------------------------------------------------------------------------- part / UV


def test_sampling_at_cell_centres_is_exact_and_part_ce_matches() -> None:
    generator = torch.Generator().manual_seed(0)
    stride = 4
    logits = torch.randn(2, K, 3, 5, generator=generator, dtype=torch.float64)
    cells = [(0, 0, 0), (0, 2, 3), (1, 1, 4), (1, 0, 2)]  # (image, i, j)
    point_image = torch.tensor([b for b, _, _ in cells])
    point_xy = torch.tensor([[(j + 0.5) * stride, (i + 0.5) * stride] for _, i, j in cells])
    point_part = torch.tensor([0, 7, 24, 3])

    sampled = sample_at_points(logits, point_image, point_xy, stride=stride)
    expected = torch.stack([logits[b, :, i, j] for b, i, j in cells])
    assert torch.allclose(sampled, expected, atol=1e-12)

    hand = []
    for (b, i, j), part in zip(cells, point_part.tolist(), strict=True):
        cell = logits[b, :, i, j].tolist()
        hand.append(math.log(sum(math.exp(v) for v in cell)) - cell[part])
    loss = part_loss(logits, point_image, point_xy, point_part, stride=stride)
    assert loss.item() == pytest.approx(sum(hand) / len(hand), rel=1e-12)


def test_sampling_interpolates_bilinearly_between_cells() -> None:
    stride = 8
    values = torch.arange(12, dtype=torch.float64).reshape(1, 1, 3, 4) ** 2  # nonlinear
    # Cell units (u, v) = (x, y) / stride; cell (i, j) centred at (j + 0.5, i + 0.5).
    u, v = 1.5 + 0.25, 0.5 + 0.6  # between columns 1, 2 and rows 0, 1
    point_xy = torch.tensor([[u * stride, v * stride]], dtype=torch.float64)
    sampled = sample_at_points(values, torch.tensor([0]), point_xy, stride=stride)
    grid = values[0, 0]
    top = 0.75 * grid[0, 1] + 0.25 * grid[0, 2]
    bottom = 0.75 * grid[1, 1] + 0.25 * grid[1, 2]
    assert sampled.item() == pytest.approx((0.4 * top + 0.6 * bottom).item(), rel=1e-12)

    # Beyond the outermost cell centres the border value holds (no blend with zeros).
    corner = sample_at_points(values, torch.tensor([0]), torch.tensor([[0.5, 0.5]]), stride=stride)
    assert corner.item() == grid[0, 0].item()


def test_part_loss_zero_points_is_connected_zero() -> None:
    logits = torch.randn(2, K, 3, 3, requires_grad=True)
    loss = part_loss(
        logits, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 2),
        torch.zeros(0, dtype=torch.int64), stride=4,
    )
    _assert_connected_zero(loss, logits)


def test_sample_at_points_rejects_bad_image_index() -> None:
    with pytest.raises(ValueError, match="point_image"):
        sample_at_points(torch.zeros(1, 2, 3, 3), torch.tensor([1]), torch.zeros(1, 2), stride=4)


def _smooth_l1(x: float, beta: float) -> float:
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def test_uv_loss_picks_the_gt_part_channel() -> None:
    generator = torch.Generator().manual_seed(1)
    stride, beta = 4, 0.1
    u_logits = torch.rand(2, K, 3, 4, generator=generator, dtype=torch.float64)
    v_logits = torch.rand(2, K, 3, 4, generator=generator, dtype=torch.float64)
    cells = [(0, 1, 1), (1, 2, 3), (1, 0, 0)]  # (image, i, j)
    point_image = torch.tensor([b for b, _, _ in cells])
    point_xy = torch.tensor([[(j + 0.5) * stride, (i + 0.5) * stride] for _, i, j in cells])
    point_part = torch.tensor([5, 0, 24])  # the background point is ignored
    point_uv = torch.tensor([[0.2, 0.9], [0.5, 0.5], [0.0, 1.0]], dtype=torch.float64)

    loss = uv_loss(u_logits, v_logits, point_image, point_xy, point_part, point_uv,
                   stride=stride, beta=beta)
    hand = 0.0
    for index in (0, 2):
        b, i, j = cells[index]
        part = int(point_part[index])
        hand += _smooth_l1(u_logits[b, part, i, j].item() - point_uv[index, 0].item(), beta)
        hand += _smooth_l1(v_logits[b, part, i, j].item() - point_uv[index, 1].item(), beta)
    assert loss.item() == pytest.approx(hand / 2, rel=1e-12)


def test_uv_loss_without_body_points_is_connected_zero() -> None:
    u_logits = torch.randn(1, K, 3, 3, requires_grad=True)
    v_logits = torch.randn(1, K, 3, 3, requires_grad=True)
    loss = uv_loss(u_logits, v_logits, torch.tensor([0]), torch.tensor([[2.0, 2.0]]),
                   torch.tensor([0]), torch.tensor([[0.3, 0.3]]), stride=4, beta=0.1)
    _assert_connected_zero(loss, u_logits, v_logits)


# --------------------------------------------------------------------------- smoothness


def _step_logits(batch: int = 1) -> torch.Tensor:
    """(B, 75, 4, 4) float64: 0 in columns 0-1, 1 in column 2, 100 in column 3."""
    logits = torch.zeros(batch, 3 * K, 4, 4, dtype=torch.float64)
    logits[..., 2] = 1
    logits[..., 3] = 100
    return logits


def test_smoothness_constant_logits_is_zero() -> None:
    logits = torch.full((1, 3 * K, 4, 4), 3.0, requires_grad=True)
    loss = smoothness_loss(logits, torch.ones(1, 4, 4, dtype=torch.bool),
                           torch.ones(1, 4, 4), torch.tensor([0]))
    _assert_connected_zero(loss, logits)


def test_smoothness_step_inside_one_instance() -> None:
    logits = _step_logits()
    logits[..., 3] = 1  # one step, between columns 1 and 2
    active = torch.ones(1, 4, 4, dtype=torch.bool)
    loss = smoothness_loss(logits, active, torch.ones(1, 4, 4), torch.tensor([0]))
    # 12 horizontal + 12 vertical pairs; the 4 pairs across the step have |∇C| = 1, weight 1.
    assert loss.item() == pytest.approx(4 / 24, rel=1e-12)


def test_smoothness_excludes_pairs_with_an_inactive_site() -> None:
    logits = _step_logits()  # column 3 (100) would dominate if its pairs counted
    active = torch.ones(1, 4, 4, dtype=torch.bool)
    active[..., 3] = False
    loss = smoothness_loss(logits, active, torch.ones(1, 4, 4), torch.tensor([0]))
    # Excluded: 4 horizontal pairs (2, 3) and 3 vertical pairs in column 3 -> 17 remain.
    assert loss.item() == pytest.approx(4 / 17, rel=1e-12)


def test_smoothness_downweights_instance_boundaries() -> None:
    logits = _step_logits(batch=2)
    logits[..., 3] = 1
    active = torch.ones(2, 4, 4, dtype=torch.bool)
    boundary = torch.zeros(4, 4, dtype=torch.float64)
    boundary[:, :2] = 1  # the instance ends exactly where the step is
    masks = torch.stack([boundary, torch.ones(4, 4, dtype=torch.float64), boundary])
    # Image 0: the boundary instance and one covering everything; image 1: boundary only.
    loss = smoothness_loss(logits, active, masks, torch.tensor([0, 0, 1]))
    weight_0 = (math.exp(-1) + 1) / 2
    weight_1 = math.exp(-1)
    assert loss.item() == pytest.approx(4 * (weight_0 + weight_1) / 48, rel=1e-12)


def test_smoothness_gradient_and_empty_cases() -> None:
    logits = torch.randn(2, 3 * K, 4, 4, requires_grad=True)
    no_active = smoothness_loss(logits, torch.zeros(2, 4, 4, dtype=torch.bool),
                                torch.zeros(0, 4, 4), torch.zeros(0, dtype=torch.int64))
    _assert_connected_zero(no_active, logits)

    logits.grad = None
    masks = torch.rand(1, 4, 4, requires_grad=True)
    loss = smoothness_loss(logits, torch.ones(2, 4, 4, dtype=torch.bool), masks,
                           torch.tensor([1]))
    loss.backward()
    assert loss.item() > 0 and logits.grad is not None and logits.grad.abs().sum() > 0
    assert masks.grad is None


def test_smoothness_validates_shapes() -> None:
    with pytest.raises(ValueError, match="active"):
        smoothness_loss(torch.zeros(1, 3 * K, 4, 4), torch.ones(1, 4, 5, dtype=torch.bool),
                        torch.zeros(0, 4, 4), torch.zeros(0, dtype=torch.int64))


def test_part_loss_matches_torch_reference_on_random_points() -> None:
    """Cross-check against F.interpolate: upsampling by the stride with align_corners=False
    puts logit cells where ``sample_at_points`` assumes them."""
    generator = torch.Generator().manual_seed(2)
    stride = 4
    logits = torch.randn(1, K, 3, 4, generator=generator, dtype=torch.float64)
    upsampled = F.interpolate(logits, scale_factor=stride, mode="bilinear", align_corners=False)
    pixels = torch.tensor([[1, 2], [5, 7], [13, 9], [15, 11]])  # (x, y) integer pixel indices
    point_xy = pixels.to(torch.float64) + 0.5
    sampled = sample_at_points(logits, torch.zeros(4, dtype=torch.int64), point_xy, stride=stride)
    expected = upsampled[0, :, pixels[:, 1], pixels[:, 0]].T
    assert torch.allclose(sampled, expected, atol=1e-12)
