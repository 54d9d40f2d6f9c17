"""``model.data.crowd``: the grid of its scenes, and the builder on the real body model (N
persons at the requested size: a constant total foreground, or proportional to N)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.util import find_spec

import numpy as np
import pytest
import torch

from model.data.crowd import CrowdBuilder, grid_shape

needs_anny = pytest.mark.skipif(find_spec("anny") is None, reason="needs the 'data' extra")
HEIGHT, WIDTH = 96, 128


@pytest.mark.parametrize(
    ("persons", "shape"), [(0, (0, 0)), (1, (1, 1)), (2, (1, 2)), (4, (1, 4)), (16, (3, 6))]
)
def test_grid_gives_every_person_a_cell(persons: int, shape: tuple[int, int]) -> None:
    rows, cols = grid_shape(persons, 384, 512)
    assert (rows, cols) == shape
    assert rows * cols >= persons and (rows - 1) * cols < max(persons, 1)


@pytest.fixture(scope="module")
def builder() -> Iterator[CrowdBuilder]:
    from model.data.synth import load_renderer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield CrowdBuilder(load_renderer(), height=HEIGHT, width=WIDTH, seed=0)
    torch.set_num_threads(threads)


@pytest.mark.slow
@needs_anny
def test_a_constant_total_is_shared_by_the_persons(builder: CrowdBuilder) -> None:
    total = 0.06
    crowds = [builder.build(n, total / n) for n in (1, 2, 4)]
    for n, crowd in zip((1, 2, 4), crowds, strict=True):
        assert crowd.persons == n
        assert set(np.unique(crowd.instance)) == set(range(n + 1))
        assert crowd.foreground_fraction == pytest.approx(total, rel=0.08)
        assert crowd.person_fractions == pytest.approx([total / n] * n, rel=0.1)
        assert not crowd.shrunk.any()
    heights = [float(np.mean(c.boxes_xyxy[:, 3] - c.boxes_xyxy[:, 1])) for c in crowds]
    assert heights[0] > heights[1] > heights[2]  # people shrink as N grows


@pytest.mark.slow
@needs_anny
def test_a_constant_person_size_grows_the_foreground_with_n(builder: CrowdBuilder) -> None:
    each = 0.01
    crowds = {n: builder.build(n, each) for n in (1, 2, 4)}
    for n, crowd in crowds.items():
        assert crowd.persons == n
        assert crowd.foreground_fraction == pytest.approx(n * each, rel=0.08)
        boxes = crowd.boxes_xyxy
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= WIDTH).all()
        assert (boxes[:, 3] <= HEIGHT).all()


@pytest.mark.slow
@needs_anny
def test_a_scene_of_nobody_is_background_only(builder: CrowdBuilder) -> None:
    empty = builder.build(0, 0.01)
    assert empty.persons == 0 and empty.foreground_fraction == 0.0
    assert empty.image.shape == (HEIGHT, WIDTH, 3)
    assert empty.boxes_xyxy.shape == (0, 4) and empty.shrunk.shape == (0,)


@pytest.mark.slow
@needs_anny
def test_bad_requests_are_refused(builder: CrowdBuilder) -> None:
    for persons, fraction in ((-1, 0.01), (1, 0.0), (1, 1.0)):
        with pytest.raises(ValueError, match="need persons >= 0 and 0 < fraction < 1"):
            builder.build(persons, fraction)
