"""Overlay, isocontours, IUV panels and PNG writing of ``model.outputs.visualize``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model.outputs.visualize import (
    PART_PALETTE,
    draw_iuv_panels,
    draw_overlay,
    isocontours,
    write_png,
)
from model.structures import DensePoseResult

HEIGHT, WIDTH = 24, 40
BOX = (4, 6, 36, 20)
"""x0, y0, x1, y1 of the test person; it is labelled on the inner rectangle INSIDE."""
INSIDE = (slice(9, 17), slice(8, 32))


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


def _ramp_person(part: int = 2) -> DensePoseResult:
    """One person labelled ``part`` on INSIDE, U rising left to right over [0, 1), V = 0.5."""
    x0, y0, x1, y1 = BOX
    parts = torch.zeros(y1 - y0, x1 - x0, dtype=torch.uint8)
    uv = torch.zeros(2, y1 - y0, x1 - x0)
    rows = slice(INSIDE[0].start - y0, INSIDE[0].stop - y0)
    cols = slice(INSIDE[1].start - x0, INSIDE[1].stop - x0)
    parts[rows, cols] = part
    width = cols.stop - cols.start
    uv[0, rows, cols] = (torch.arange(width) / width).expand(rows.stop - rows.start, width)
    uv[1, rows, cols] = 0.5
    masks = torch.zeros(1, HEIGHT, WIDTH, dtype=torch.bool)
    masks[0][INSIDE] = True
    return DensePoseResult(
        boxes_xyxy=torch.tensor([BOX], dtype=torch.float32),
        scores=torch.tensor([0.87]),
        masks=masks,
        parts=[parts],
        uv=[uv],
    )


def test_palette_has_25_distinct_colours_and_black_background() -> None:
    assert PART_PALETTE.shape == (25, 3) and PART_PALETTE.dtype == np.uint8
    assert not PART_PALETTE[0].any()
    assert len(np.unique(PART_PALETTE, axis=0)) == 25


def test_overlay_of_empty_result_is_the_image() -> None:
    image = _image()
    out = draw_overlay(image, DensePoseResult.empty(HEIGHT, WIDTH))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out is not image
    np.testing.assert_array_equal(out, image)


def test_overlay_colours_the_person_and_leaves_the_rest() -> None:
    image = _image()
    out = draw_overlay(image, _ramp_person(part=2), alpha=1.0, contour_levels=0)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[INSIDE], np.broadcast_to(PART_PALETTE[2], out[INSIDE].shape))
    x0, y0, x1, y1 = BOX
    outside_box = np.ones((HEIGHT, WIDTH), dtype=bool)
    outside_box[max(y0 - 10, 0) : y1, x0:x1] = False  # the box, its outline and score label
    np.testing.assert_array_equal(out[outside_box], image[outside_box])
    assert (out[y1 - 1, x0 + 1 : x1 - 1] == (0, 255, 0)).all()  # the box's bottom edge


def test_overlay_blends_with_alpha() -> None:
    image = _image()
    out = draw_overlay(image, _ramp_person(part=5), alpha=0.5, contour_levels=0)
    expected = np.round(0.5 * image[INSIDE] + 0.5 * PART_PALETTE[5].astype(float))
    np.testing.assert_array_equal(out[INSIDE], expected.astype(np.uint8))


def test_u_isocontours_appear_where_u_crosses_a_level() -> None:
    image = _image()
    levels = 4
    out = draw_overlay(image, _ramp_person(), alpha=0.0, contour_levels=levels)
    # U = k / 24 on column 8 + k: levels change between k = 5|6, 11|12, 17|18.
    line_columns = [8 + 5, 8 + 11, 8 + 17]
    changed = (out[INSIDE] != image[INSIDE]).any(axis=-1)  # [rows, cols]
    assert changed[:, [c - 8 for c in line_columns]].all()
    assert changed.sum() == changed.shape[0] * len(line_columns)
    u_line = out[INSIDE][:, line_columns[1] - 8]
    assert (u_line[:, 0] == 255).all() and (u_line[:, 2] == 0).all()  # yellow-red family


def test_isocontours_stay_within_one_part_and_person() -> None:
    levels = 8
    across_columns = np.tile((np.arange(8) + 0.5) / levels, (3, 1))  # level = column index
    parts = np.array([[2] * 4 + [9] * 4] * 3, dtype=np.uint8)
    one_person = np.zeros((3, 8), dtype=np.int64)
    lines = isocontours(one_person, parts, across_columns, levels)
    assert (lines[:, [0, 1, 2, 4, 5, 6]] == [1, 2, 3, 5, 6, 7]).all()  # the higher level
    assert (lines[:, [3, 7]] == -1).all()  # 3|4: the part changes; 7: last column

    across_rows = across_columns.T  # [8, 3], level = row index
    two_people = np.zeros((8, 3), dtype=np.int64)
    two_people[4:] = 1
    lines = isocontours(two_people, np.full((8, 3), 2, np.uint8), across_rows, levels)
    assert (lines[[0, 1, 2, 4, 5, 6]] >= 0).all()
    assert (lines[[3, 7]] == -1).all()  # 3|4: the person changes

    flat = isocontours(one_person, parts, np.zeros((3, 8)), levels)
    assert (flat == -1).all()


def test_iuv_panels_show_parts_u_and_v() -> None:
    result = _ramp_person(part=7)
    panels = draw_iuv_panels(result)
    assert panels.shape == (HEIGHT, 3 * WIDTH, 3) and panels.dtype == np.uint8
    i_panel, u_panel, v_panel = np.split(panels, 3, axis=1)
    np.testing.assert_array_equal(i_panel[INSIDE], np.broadcast_to(PART_PALETTE[7], (8, 24, 3)))
    background = np.ones((HEIGHT, WIDTH), dtype=bool)
    background[INSIDE] = False
    for panel in (i_panel, u_panel, v_panel):
        assert not panel[background].any()
    assert len(np.unique(u_panel[INSIDE].reshape(-1, 3), axis=0)) > 10  # U varies
    assert len(np.unique(v_panel[INSIDE].reshape(-1, 3), axis=0)) == 1  # V is constant


def test_overlay_validates_its_input() -> None:
    with pytest.raises(ValueError, match="image_rgb"):
        draw_overlay(np.zeros((HEIGHT, WIDTH), np.uint8), DensePoseResult.empty(HEIGHT, WIDTH))
    with pytest.raises(ValueError, match="alpha"):
        draw_overlay(_image(), DensePoseResult.empty(HEIGHT, WIDTH), alpha=1.5)


def test_write_png_keeps_rgb_order(tmp_path: Path) -> None:
    image = _image()
    path = tmp_path / "picture.png"
    write_png(path, image)
    np.testing.assert_array_equal(cv2.imread(str(path))[..., ::-1], image)
    with pytest.raises(ValueError, match="image_rgb"):
        write_png(path, image[..., 0])
