"""Pictures people look at: part colours and U/V isocontours over an image, IUV panels.

All images here are RGB uint8 numpy arrays of shape (H, W, 3).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model.inference.deadline import NO_DEADLINE, Deadline
from model.outputs.encoding import paste_owners
from model.structures import DensePoseResult

PART_PALETTE = np.array(
    [
        [0, 0, 0],  # 0 background
        [230, 25, 75],  # 1 torso back
        [60, 180, 75],  # 2 torso front
        [255, 225, 25],  # 3 right hand
        [0, 130, 200],  # 4 left hand
        [245, 130, 48],  # 5 left foot
        [145, 30, 180],  # 6 right foot
        [70, 240, 240],  # 7 upper leg right, back
        [240, 50, 230],  # 8 upper leg left, back
        [210, 245, 60],  # 9 upper leg right, front
        [250, 190, 212],  # 10 upper leg left, front
        [0, 128, 128],  # 11 lower leg right, back
        [220, 190, 255],  # 12 lower leg left, back
        [170, 110, 40],  # 13 lower leg right, front
        [255, 250, 200],  # 14 lower leg left, front
        [128, 0, 0],  # 15 upper arm left, back
        [170, 255, 195],  # 16 upper arm right, back
        [128, 128, 0],  # 17 upper arm left, front
        [255, 215, 180],  # 18 upper arm right, front
        [0, 0, 128],  # 19 lower arm left, back
        [128, 128, 128],  # 20 lower arm right, back
        [255, 99, 71],  # 21 lower arm left, front
        [0, 200, 100],  # 22 lower arm right, front
        [100, 60, 255],  # 23 head right
        [190, 0, 90],  # 24 head left
    ],
    dtype=np.uint8,
)
"""(25, 3) RGB uint8: one colour per chart I (row 0 = background, black)."""

BOX_COLOR = (0, 255, 0)
"""RGB of person boxes and their score labels."""


def _level_colors(
    levels: int, start: tuple[int, int, int], end: tuple[int, int, int]
) -> np.ndarray:
    """(levels, 3) uint8 colours running linearly from ``start`` to ``end``."""
    t = np.linspace(0.0, 1.0, levels)[:, None]
    colours: np.ndarray = np.round((1 - t) * np.array(start) + t * np.array(end))
    return colours.astype(np.uint8)


_NEIGHBOURS = (
    ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),  # pixel, right neighbour
    ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),  # pixel, lower neighbour
)


def _pasted(
    result: DensePoseResult, deadline: Deadline = NO_DEADLINE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``paste_owners`` as numpy: owner (H, W), parts (H, W), uv (2, H, W)."""
    owner, parts, uv = paste_owners(result, deadline=deadline)
    return owner.numpy(), parts.numpy(), uv.numpy()


def _check_image(image_rgb: np.ndarray, height: int, width: int) -> None:
    if image_rgb.dtype != np.uint8 or image_rgb.shape != (height, width, 3):
        raise ValueError(
            f"image_rgb must be ({height}, {width}, 3) uint8 to match the result, "
            f"got {image_rgb.shape} {image_rgb.dtype}"
        )


def isocontours(owner: np.ndarray, parts: np.ndarray, value: np.ndarray, levels: int) -> np.ndarray:
    """Where ``floor(value · levels)`` changes between 4-neighbours of the same person and part.

    Args:
        owner: (H, W) int, person index per pixel (-1 = none).
        parts: (H, W) uint8, chart I per pixel (0 = background).
        value: (H, W) float in [0, 1], U or V.
        levels: number of bands in [0, 1].

    Returns:
        (H, W) int64: the higher of the two levels on the first pixel of each changing
        neighbour pair (a 1-pixel line), -1 elsewhere.
    """
    level = np.clip(np.floor(value * levels), 0, levels - 1).astype(np.int64)
    out = np.full(level.shape, -1, dtype=np.int64)
    for a, b in _NEIGHBOURS:
        change = (
            (parts[a] > 0)
            & (parts[a] == parts[b])
            & (owner[a] == owner[b])
            & (level[a] != level[b])
        )
        region = out[a]
        region[change] = np.maximum(level[a], level[b])[change]
    return out


def draw_overlay(
    image_rgb: np.ndarray,
    result: DensePoseResult,
    *,
    alpha: float = 0.6,
    contour_levels: int = 10,
    deadline: Deadline = NO_DEADLINE,
) -> np.ndarray:
    """Dense pose drawn over an image, in the style of the DDP paper's figures.

    ``draw_dense_overlay`` of the persons pasted into the image (overlapping persons follow
    ``model.outputs.encoding.paste_parts_uv``: higher score on top), then each box outlined with
    its score.

    Args:
        image_rgb: (H, W, 3) uint8.
        result: dense pose of that image.

    Returns:
        (H, W, 3) uint8, a new array (pixels outside persons and boxes unchanged).

    Raises:
        DeadlineExceeded: before a person is pasted or the picture drawn, once ``deadline``
            has passed.
    """
    height, width = result.masks.shape[-2:]
    _check_image(image_rgb, height, width)
    owner, parts, uv = _pasted(result, deadline)
    deadline.check("before the overlay is drawn")
    out = draw_dense_overlay(
        image_rgb, owner, parts, uv, alpha=alpha, contour_levels=contour_levels
    )
    _draw_boxes(out, result)
    return out


def draw_dense_overlay(
    image_rgb: np.ndarray,
    owner: np.ndarray,
    parts: np.ndarray,
    uv: np.ndarray,
    *,
    alpha: float = 0.6,
    contour_levels: int = 10,
) -> np.ndarray:
    """Image-sized dense labels (predicted or ground truth) drawn over an image.

    Part colours (``PART_PALETTE``) are blended with weight ``alpha`` over every labelled
    pixel; U isocontours are drawn in yellow→red, V isocontours in cyan→blue (colour by level),
    at ``contour_levels`` bands per unit (0 = no contours); contours never cross from one
    person or part to another.

    Args:
        image_rgb: (H, W, 3) uint8.
        owner: (H, W) int, the person of each pixel (any ids; only equality matters).
        parts: (H, W) int, chart I (0 = background).
        uv: (2, H, W) float in [0, 1].

    Returns:
        (H, W, 3) uint8, a new array.
    """
    _check_image(image_rgb, *parts.shape)
    if not 0.0 <= alpha <= 1.0 or contour_levels < 0:
        raise ValueError(
            f"need 0 <= alpha <= 1 and contour_levels >= 0, got {alpha}, {contour_levels}"
        )
    out = image_rgb.copy()
    fg = parts > 0
    blended = (1 - alpha) * image_rgb[fg] + alpha * PART_PALETTE[parts[fg]].astype(np.float64)
    out[fg] = np.round(blended).astype(np.uint8)
    if contour_levels > 0:
        families = (((255, 255, 0), (255, 0, 0)), ((0, 255, 255), (0, 0, 255)))
        for value, (start, end) in zip(uv, families, strict=True):
            line = isocontours(owner, parts, value, contour_levels)
            on_line = line >= 0
            out[on_line] = _level_colors(contour_levels, start, end)[line[on_line]]
    return out


def _draw_boxes(image_rgb: np.ndarray, result: DensePoseResult) -> None:
    """Outline each person's box and write its score above it, in place."""
    font_scale = max(0.3, min(image_rgb.shape[:2]) / 800)
    for (x0, y0, x1, y1), score in zip(
        result.boxes_xyxy.tolist(), result.scores.tolist(), strict=True
    ):
        top_left, bottom_right = (round(x0), round(y0)), (round(x1) - 1, round(y1) - 1)
        cv2.rectangle(image_rgb, top_left, bottom_right, BOX_COLOR, 1)
        text_origin = (top_left[0], max(top_left[1] - 2, round(25 * font_scale)))
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(image_rgb, f"{score:.2f}", text_origin, font, font_scale, BOX_COLOR, 1)


def _false_colour(value: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) RGB with the JET colour map, black where not ``fg``."""
    value_uint8 = np.round(np.clip(value, 0, 1) * 255).astype(np.uint8)
    rgb: np.ndarray = cv2.cvtColor(
        cv2.applyColorMap(value_uint8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB
    )
    rgb[~fg] = 0
    return rgb


def draw_iuv_panels(result: DensePoseResult) -> np.ndarray:
    """Side-by-side I | U | V false-colour panels of one image.

    Returns:
        (H, 3W, 3) uint8: parts in ``PART_PALETTE``, U and V with the JET colour map,
        black background.
    """
    _, parts, uv = _pasted(result)
    fg = parts > 0
    panels = [PART_PALETTE[parts], _false_colour(uv[0], fg), _false_colour(uv[1], fg)]
    return np.concatenate(panels, axis=1)


def write_png(path: str | Path, image_rgb: np.ndarray) -> None:
    """Write an (H, W, 3) RGB uint8 image as a PNG file."""
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(
            f"image_rgb must be (H, W, 3) uint8, got {image_rgb.shape} {image_rgb.dtype}"
        )
    ok, png = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {image_rgb.shape}")
    Path(path).write_bytes(png.tobytes())
