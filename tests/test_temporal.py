"""Temporal smoothing (paper section 4): warping conventions, validity, eq. 6 over a window,
flows estimated once per pair, the flow estimators."""

import math

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torchvision.models.optical_flow import raft_small

from model.temporal import (
    DISFlow,
    SmoothingConfig,
    TemporalSmoother,
    build_flow_estimator,
    chain_flows,
    resample_flow,
    warp_logits,
    weighted_vote,
)
from model.temporal.raft import RAFTFlow
from model.temporal.warp import cell_centres

H, W = 20, 24
EXTENT = (float(H), float(W))


def linear_field(a: float = 0.7, b: float = -1.3, c: float = 2.0) -> torch.Tensor:
    """(3, H, W): channel k = (k + 1) (a x + b y + c); bilinear sampling reproduces it exactly."""
    x, y = cell_centres(H, W)
    plane = a * x + b * y + c
    return torch.stack([plane, 2 * plane, 3 * plane])


def constant_flow(dx: float, dy: float, height: int = H, width: int = W) -> torch.Tensor:
    flow = torch.zeros(2, height, width)
    flow[0], flow[1] = dx, dy
    return flow


def all_active() -> torch.Tensor:
    return torch.ones(H, W, dtype=torch.bool)


def test_integer_translation_reads_the_shifted_cells():
    logits = torch.randn(5, H, W)
    warped, valid = warp_logits(logits, all_active(), constant_flow(2, -1), extent=EXTENT)
    # out(y, x) = logits(y - 1, x + 2): valid for y >= 1 and x <= W - 3
    assert torch.equal(valid[1:, : W - 2], torch.ones(H - 1, W - 2, dtype=torch.bool))
    assert not valid[0].any() and not valid[:, W - 2 :].any()
    torch.testing.assert_close(warped[:, 1:, : W - 2], logits[:, : H - 1, 2:], rtol=0, atol=1e-5)
    assert (warped[:, ~valid] == 0).all()


@pytest.mark.parametrize(("dx", "dy"), [(0.5, 0.25), (-1.75, 0.6), (3.3, -2.1)])
def test_subpixel_translation_is_exact_on_a_linear_field(dx, dy):
    logits = linear_field()
    warped, valid = warp_logits(logits, all_active(), constant_flow(dx, dy), extent=EXTENT)
    x, y = cell_centres(H, W)
    expected = linear_field(c=2.0 + 0.7 * dx - 1.3 * dy)
    interior = (x + dx >= 0) & (x + dx <= W - 1) & (y + dy >= 0) & (y + dy <= H - 1)
    assert valid[interior].all()
    torch.testing.assert_close(warped[:, interior], expected[:, interior], rtol=0, atol=1e-4)


def test_rotation_samples_the_rotated_positions():
    angle = math.radians(10)
    x, y = cell_centres(H, W)
    cx, cy = (W - 1) / 2, (H - 1) / 2
    source_x = cx + math.cos(angle) * (x - cx) - math.sin(angle) * (y - cy)
    source_y = cy + math.sin(angle) * (x - cx) + math.cos(angle) * (y - cy)
    displacement = torch.stack([source_x - x, source_y - y])
    warped, valid = warp_logits(linear_field(), all_active(), displacement, extent=EXTENT)
    plane = 0.7 * source_x - 1.3 * source_y + 2.0
    expected = torch.stack([plane, 2 * plane, 3 * plane])
    interior = (source_x >= 0) & (source_x <= W - 1) & (source_y >= 0) & (source_y <= H - 1)
    assert interior.sum() > H * W / 2 and valid[interior].all()
    torch.testing.assert_close(warped[:, interior], expected[:, interior], rtol=0, atol=1e-4)


def test_sources_outside_the_frame_are_invalid_and_zero():
    logits = torch.randn(2, H, W)
    warped, valid = warp_logits(logits, all_active(), constant_flow(5.0, 0.0), extent=EXTENT)
    # in the frame means x + 5 <= W - 0.5
    assert valid[:, : W - 5].all() and not valid[:, W - 5 :].any()
    assert (warped[:, :, W - 5 :] == 0).all()


def test_the_extent_not_the_padded_grid_bounds_the_frame():
    logits = torch.randn(2, H, W)
    _, valid = warp_logits(logits, all_active(), constant_flow(0, 2), extent=(H - 4.0, W - 4.0))
    assert valid[: H - 6, : W - 4].all()
    assert not valid[H - 6 :].any() and not valid[:, W - 4 :].any()


def test_inactive_sources_do_not_vote_and_never_leak_zeros():
    active = all_active()
    active[:, 12:] = False
    logits = linear_field() * active  # the IUV branch leaves zeros outside the active sites
    warped, valid = warp_logits(logits, active, constant_flow(0.25, 0), extent=EXTENT)
    # column 11 samples x = 11.25: 3/4 of the weight on active column 11 -> valid, and its
    # value is column 11's alone; column 12 on is sourced from inactive cells -> invalid
    assert valid[:, :12].all() and not valid[:, 12:].any()
    torch.testing.assert_close(warped[:, :, 11], logits[:, :, 11], atol=1e-5, rtol=0)
    shifted = linear_field(c=2.0 + 0.7 * 0.25)
    torch.testing.assert_close(warped[:, :, :11], shifted[:, :, :11], atol=1e-5, rtol=0)


def test_zero_flow_is_the_identity_on_active_cells():
    logits = torch.randn(4, H, W)
    active = torch.rand(H, W) > 0.3
    logits = logits * active
    warped, valid = warp_logits(logits, active, torch.zeros(2, H, W), extent=EXTENT)
    assert torch.equal(valid, active)
    torch.testing.assert_close(warped, logits, atol=1e-5, rtol=0)  # float round-off


def test_flow_resampled_to_a_coarser_grid_is_rescaled():
    flow = constant_flow(8.0, -4.0, 4 * H, 4 * W)
    grid = resample_flow(flow, (H, W), (0.25, 0.25))
    torch.testing.assert_close(grid, constant_flow(2.0, -1.0))
    # a linear flow is sampled at the cell centres: cell x covers pixels 4x .. 4x + 3
    px, _ = cell_centres(4 * H, 4 * W)
    linear = torch.stack([px, torch.zeros_like(px)])
    x, _ = cell_centres(H, W)
    torch.testing.assert_close(resample_flow(linear, (H, W), (0.25, 0.25))[0], (4 * x + 1.5) / 4)


def test_chained_flows_add_up_and_stop_at_the_frame_border():
    displacement, reachable = chain_flows(
        [constant_flow(1.0, 0.0), constant_flow(2.0, 0.5)], extent=EXTENT
    )
    torch.testing.assert_close(displacement, constant_flow(3.0, 0.5))
    x, y = cell_centres(H, W)
    assert torch.equal(reachable, (x + 3 <= W - 0.5) & (y + 0.5 <= H - 0.5))


def test_inconsistent_forward_backward_flows_fail_the_occlusion_check():
    forward = [constant_flow(1.0, 0.0)]
    _, agreeing = chain_flows(forward, extent=EXTENT, reverse=[constant_flow(-1.0, 0.0)])
    _, disagreeing = chain_flows(forward, extent=EXTENT, reverse=[constant_flow(1.0, 0.0)])
    assert agreeing[:, : W - 1].all() and not disagreeing.any()


def test_weighted_vote_renormalises_over_valid_voters():
    a, b = torch.full((2, 1, 3), 1.0), torch.full((2, 1, 3), 4.0)
    valid_a = torch.tensor([[True, True, False]])
    valid_b = torch.tensor([[True, False, False]])
    logits, voted = weighted_vote([(0.2, a, valid_a), (0.6, b, valid_b)])
    torch.testing.assert_close(logits[0, 0], torch.tensor([(0.2 + 2.4) / 0.8, 1.0, 0.0]))
    assert voted.tolist() == [[True, True, False]]


class FakeFlow:
    """Zero flow; records every (source, target) pair by the frames' fill values."""

    def __init__(self) -> None:
        self.pairs: list[tuple[int, int]] = []
        self.calls = 0

    def __call__(self, sources, targets):
        self.calls += 1
        self.pairs += [
            (int(s[0, 0, 0]), int(t[0, 0, 0])) for s, t in zip(sources, targets, strict=True)
        ]
        height, width = sources[0].shape[:2]
        return torch.zeros(len(sources), 2, height, width)


def frames_and_logits(count: int):
    frames = [np.full((2 * H, 2 * W, 3), t, dtype=np.uint8) for t in range(count)]
    logits = torch.stack([torch.full((3, H, W), float(t)) for t in range(count)])
    return frames, logits, torch.ones(count, H, W, dtype=torch.bool)


def smooth_all(smoother, frames, logits, active, batch):
    out = []
    for start in range(0, len(frames), batch):
        rows = slice(start, start + batch)
        out += smoother.push(frames[rows], logits[rows], active[rows], extent=EXTENT)
    return out + smoother.finish()


def test_window_edges_renormalise_over_the_neighbours_that_exist():
    frames, logits, active = frames_and_logits(5)
    config = SmoothingConfig(radius=2, centre_weight=0.4, neighbour_weight=0.2)
    out = smooth_all(TemporalSmoother(FakeFlow(), config), frames, logits, active, batch=2)
    assert [f.index for f in out] == [0, 1, 2, 3, 4]
    expected = [
        (0.4 * 0 + 0.2 * (1 + 2)) / 0.8,
        (0.4 * 1 + 0.2 * (0 + 2 + 3)) / 1.0,
        2.0,
        (0.4 * 3 + 0.2 * (1 + 2 + 4)) / 1.0,
        (0.4 * 4 + 0.2 * (2 + 3)) / 0.8,
    ]
    for frame, value in zip(out, expected, strict=True):
        torch.testing.assert_close(frame.logits, torch.full((3, H, W), value))
        assert frame.active.all()


def test_identical_frames_with_zero_flow_are_unchanged():
    logits = torch.randn(3, H, W).expand(4, -1, -1, -1).clone()
    frames = [np.full((H, W, 3), 7, dtype=np.uint8)] * 4
    active = torch.ones(4, H, W, dtype=torch.bool)
    out = smooth_all(TemporalSmoother(FakeFlow()), frames, logits, active, batch=3)
    for frame in out:
        torch.testing.assert_close(frame.logits, logits[0])


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_each_pair_flow_is_estimated_once_and_frames_stream(batch):
    count, radius = 7, 2
    frames, logits, active = frames_and_logits(count)
    flow = FakeFlow()
    smoother = TemporalSmoother(flow, SmoothingConfig(radius=radius))
    first = smoother.push(frames[:batch], logits[:batch], active[:batch], extent=EXTENT)
    assert [f.index for f in first] == list(range(max(0, batch - radius)))
    rest = smooth_all(smoother, frames[batch:], logits[batch:], active[batch:], batch)
    assert [f.index for f in first + rest] == list(range(count))
    expected = {(k, k + 1) for k in range(count - 1)} | {(k + 1, k) for k in range(count - 1)}
    assert sorted(flow.pairs) == sorted(expected)  # every ordered adjacent pair exactly once
    assert flow.calls == len(range(0, count, batch)) - (batch == 1)


def test_radius_zero_passes_frames_through_without_flow():
    frames, logits, active = frames_and_logits(3)
    flow = FakeFlow()
    out = smooth_all(TemporalSmoother(flow, SmoothingConfig(radius=0)), frames, logits, active, 2)
    assert flow.calls == 0
    assert all(torch.equal(f.logits, logits[f.index]) for f in out)


def test_a_translating_clip_is_aligned_before_averaging():
    """Frame t shows the field moved by t cells to the right; with the true flows (+1 cell per
    frame forwards) every vote agrees, so smoothing leaves each frame's logits unchanged."""

    class Translation(FakeFlow):
        def __call__(self, sources, targets):
            super().__call__(sources, targets)
            signs = [
                1.0 if t[0, 0, 0] > s[0, 0, 0] else -1.0
                for s, t in zip(sources, targets, strict=True)
            ]
            return torch.stack([constant_flow(2.0 * sign, 0.0, 2 * H, 2 * W) for sign in signs])

    frames = [np.full((2 * H, 2 * W, 3), t, dtype=np.uint8) for t in range(5)]
    logits = torch.stack([linear_field(c=2.0 - 0.7 * t) for t in range(5)])
    active = torch.ones(5, H, W, dtype=torch.bool)
    out = smooth_all(TemporalSmoother(Translation()), frames, logits, active, batch=5)
    for frame in out:
        torch.testing.assert_close(frame.logits, logits[frame.index], atol=1e-4, rtol=0)


def test_smoothing_config_rejects_nonsense():
    with pytest.raises(ValueError, match="radius"):
        SmoothingConfig(radius=-1)
    with pytest.raises(ValueError, match="weights"):
        SmoothingConfig(neighbour_weight=0.0)


def test_dis_recovers_a_translation():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8), (7, 7), 2)
    moved = np.roll(image, (2, 3), axis=(0, 1))  # content moves 3 px right, 2 px down
    flow = DISFlow()([image, moved], [moved, image])
    assert flow.shape == (2, 2, 64, 80) and flow.dtype == torch.float32
    centre = (slice(None), slice(16, 48), slice(16, 64))
    torch.testing.assert_close(
        flow[0][centre].mean((1, 2)), torch.tensor([3.0, 2.0]), atol=0.2, rtol=0
    )
    torch.testing.assert_close(
        flow[1][centre].mean((1, 2)), torch.tensor([-3.0, -2.0]), atol=0.2, rtol=0
    )


def test_flow_estimators_validate_frames():
    with pytest.raises(ValueError, match="uint8"):
        DISFlow()([np.zeros((8, 8, 3))], [np.zeros((8, 8, 3))])
    with pytest.raises(ValueError, match="one size"):
        DISFlow()([np.zeros((8, 8, 3), np.uint8)], [np.zeros((8, 9, 3), np.uint8)])
    with pytest.raises(ValueError, match="weights"):
        build_flow_estimator("raft")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_raft_plumbing_with_random_weights(tmp_path, suffix):
    """Shapes and loading only: random weights, so the flow values mean nothing."""
    state = raft_small(weights=None).state_dict()
    path = tmp_path / f"raft{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    raft = RAFTFlow(path, num_flow_updates=1)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (36, 44, 3), dtype=np.uint8) for _ in range(3)]
    flow = raft(frames[:2], frames[1:])
    assert flow.shape == (2, 2, 36, 44) and flow.dtype == torch.float32
    assert torch.isfinite(flow).all()


def test_raft_rejects_weights_of_another_network(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(ValueError, match="raft_small nor raft_large"):
        RAFTFlow(path)


def test_smoothing_with_dis_flow_removes_per_frame_noise_on_a_moving_scene():
    """Texture and logit field slide right together (4 px = 1 cell per frame); each frame's
    logits carry independent noise. Aligned by DIS flow, the window averages the noise down
    (5 aligned votes: to ~0.45 of it); with zero flow it would blur the field (~0.74)."""
    count, height, width, shift = 5, 64, 96, 4
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(
        rng.integers(0, 256, (height, width + shift * count, 3), dtype=np.uint8), (5, 5), 1.5
    )
    frames = [
        np.ascontiguousarray(texture[:, shift * (count - t) :][:, :width]) for t in range(count)
    ]
    x, y = cell_centres(height // 4, width // 4)
    clean = torch.stack(
        [torch.sin((x - t) / 2.0)[None] + torch.cos(y / 4.0)[None] for t in range(count)]
    )
    noisy = clean + 0.3 * torch.randn(clean.shape)
    active = torch.ones(count, height // 4, width // 4, dtype=torch.bool)
    smoother = TemporalSmoother(DISFlow())
    out = smoother.push(frames, noisy, active, extent=(height / 4, width / 4)) + smoother.finish()
    inner = (slice(None), slice(2, -2), slice(3, -3))
    before = (noisy[2] - clean[2])[inner].abs().mean()
    after = (out[2].logits - clean[2])[inner].abs().mean()
    assert after < 0.6 * before
