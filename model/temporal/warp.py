"""Backward warping on a grid of cells, flow resampling and flow chaining.

Coordinates: a position (x, y) is in **index units** of the grid it refers to, cell (i, j)
(row i, column j) having its centre at x = j, y = i; the cell spans [j - 0.5, j + 0.5]. (In
pixel-edge units the centre is at j + 0.5, the convention of ``model.inference.postprocess``; both
describe the same point.) Every ``grid_sample`` here passes ``align_corners=False`` and maps a
position p on a side of n cells to the normalised coordinate (2p + 1) / n - 1, so sampling at
integer positions returns the cells' values exactly.

A flow (2, h, w) holds (dx, dy) per cell; "flow from a to b" moves each cell p of frame a to
its position p + flow(p) in frame b, so b(p + flow(p)) ≈ a(p). Backward warping of b's map
then reads b at p + flow(p) to predict a's map at p.

A frame covers ``extent`` = (height, width) cells of its grid from the top-left corner
(possibly fewer than the grid: the network pads its input): a position lies **in the frame**
when -0.5 <= x <= width - 0.5 and -0.5 <= y <= height - 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def cell_centres(height: int, width: int, *, device: torch.device | str = "cpu") -> Tensor:
    """(2, height, width) float32: x, y of every cell centre in index units."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device),
        torch.arange(width, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return torch.stack([xs, ys])


def sample(field: Tensor, positions: Tensor) -> Tensor:
    """Bilinear samples of ``field`` (C, h, w) at ``positions`` (2, h', w') -> (C, h', w').

    Positions are in ``field``'s index units; beyond the outermost cell centres the border
    value is repeated (``padding_mode="border"``).
    """
    height, width = field.shape[-2:]
    inverse_size = positions.new_tensor([1.0 / width, 1.0 / height]).view(2, 1, 1)
    normalised = (2.0 * positions + 1.0) * inverse_size - 1.0
    grid = normalised.permute(1, 2, 0)[None]  # [1, h', w', 2] = (x, y)
    out = F.grid_sample(
        field[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0]


def in_frame(positions: Tensor, extent: tuple[float, float]) -> Tensor:
    """(2, h, w) positions -> (h, w) bool: inside the frame of ``extent`` = (height, width)."""
    height, width = extent
    x, y = positions[0], positions[1]
    return (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)


def resample_flow(
    flow: Tensor, size: tuple[int, int], cells_per_pixel: tuple[float, float]
) -> Tensor:
    """A flow (2, H, W) in pixels of its own grid -> (2, h, w) in cells of another grid.

    The other grid has ``cells_per_pixel`` = (sy, sx) cells per pixel and shares the top-left
    corner: cell centre (x, y) lies at pixel ((x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5),
    where the flow is sampled bilinearly (border repeated for cells past the image), and the
    vectors are scaled by (sx, sy). Point sampling: flows from DIS and RAFT are smooth at the
    scale of a 4-pixel cell.
    """
    sy, sx = cells_per_pixel
    centres = cell_centres(*size, device=flow.device)
    scale = centres.new_tensor([sx, sy]).view(2, 1, 1)
    source = (centres + 0.5) / scale - 0.5
    return sample(flow, source) * scale


def consistent(forward: Tensor, backward: Tensor, *, alpha: float, beta: float) -> Tensor:
    """Forward-backward check: (2, h, w) flow a->b at p, (2, h, w) flow b->a at p + forward ->
    (h, w) bool where |fw + bw|^2 <= alpha (|fw|^2 + |bw|^2) + beta (cells^2); failing cells
    are taken as occluded or mismatched (Sundaram et al., ECCV 2010)."""
    mismatch = (forward + backward).square().sum(0)
    magnitude = forward.square().sum(0) + backward.square().sum(0)
    return mismatch <= alpha * magnitude + beta


def chain_flows(
    steps: Sequence[Tensor],
    *,
    extent: tuple[float, float],
    reverse: Sequence[Tensor] | None = None,
    alpha: float = 0.01,
    beta: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """Compose adjacent flows f_0->1, f_1->2, ... (each (2, h, w)) into the flow 0->n.

    Each cell p is followed step by step: p_(k+1) = p_k + f_k(p_k), sampling f_k bilinearly at
    p_k. A cell is reachable while every p_k stays in the frame and, when ``reverse`` (the
    flows 1->0, 2->1, ...) is given, every step passes ``consistent``.

    Returns:
        displacement (2, h, w) = p_n - p_0 in cells, reachable (h, w) bool.
    """
    if not steps:
        raise ValueError("chain_flows needs at least one flow")
    if reverse is not None and len(reverse) != len(steps):
        raise ValueError(f"need one reverse flow per step: {len(steps)} != {len(reverse)}")
    start = cell_centres(*steps[0].shape[-2:], device=steps[0].device)
    position = start
    reachable = torch.ones(start.shape[1:], dtype=torch.bool, device=start.device)
    for k, step in enumerate(steps):
        moved = sample(step, position)
        position = position + moved
        reachable &= in_frame(position, extent)
        if reverse is not None:
            back = sample(reverse[k], position)
            reachable &= consistent(moved, back, alpha=alpha, beta=beta)
    return position - start, reachable


def warp_logits(
    logits: Tensor,
    active: Tensor,
    displacement: Tensor,
    *,
    extent: tuple[float, float],
    reachable: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Backward warp: out(p) = logits(p + displacement(p)), computed only from active cells.

    Args:
        logits: (C, h, w), zero outside ``active`` (as the IUV branch leaves them).
        active: (h, w) bool, the cells whose logits were computed.
        displacement: (2, h, w) in cells (e.g. from ``chain_flows``).
        extent: (height, width) of the frame on the grid (cells).
        reachable: (h, w) bool, cells whose displacement is trustworthy (default: all).

    Returns:
        warped (C, h, w) float32 and valid (h, w) bool. A cell is valid when its source lies in
        the frame, it is reachable, and at least half of the bilinear weight at the source falls
        on active cells; its value is the bilinear interpolation over the active cells alone
        (normalised by their weight), so inactive zeros never leak in. Invalid cells are 0.
    """
    position = cell_centres(*logits.shape[-2:], device=logits.device) + displacement
    support = sample(active[None].float(), position)[0]
    valid = in_frame(position, extent) & (support >= 0.5)
    if reachable is not None:
        valid &= reachable
    scale = torch.where(valid, support.clamp_min(0.5).reciprocal(), 0.0)
    return sample(logits, position).mul_(scale), valid
