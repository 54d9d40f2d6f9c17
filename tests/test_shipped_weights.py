"""The weights in ``weights/`` are the trained default network the service and CLI load."""

import json
from pathlib import Path

import pytest

from model.checkpoint import read_config
from model.config import DDPConfig, default_config
from model.inference.predictor import Predictor
from model.inference.preprocess import read_image_rgb
from model.paths import DEFAULT_WEIGHTS

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "synthetic_scene.jpg"


def test_shipped_weights_are_the_default_config_and_small_enough_for_git():
    assert DEFAULT_WEIGHTS.stat().st_size <= 50 * 2**20
    assert read_config(DEFAULT_WEIGHTS) == default_config()
    sidecar = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert DDPConfig.from_dict(sidecar) == default_config()


@pytest.fixture(scope="module")
def example_result():
    predictor = Predictor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu")
    return predictor([read_image_rgb(EXAMPLE)])[0]


def test_shipped_weights_find_both_people_of_the_example_with_charts(example_result):
    # examples/synthetic_scene.jpg is held-out image 1 (seed 1): two people, one on each side.
    boxes = example_result.boxes_xyxy[example_result.scores >= 0.5]
    centres_x = ((boxes[:, 0] + boxes[:, 2]) / 2).tolist()
    assert any(x < 256 for x in centres_x) and any(x > 256 for x in centres_x)
    labelled = [int((parts > 0).sum()) for parts in example_result.parts]
    assert max(labelled) > 2000  # pixels with a body chart on the best-covered person
    charts = set()
    for parts in example_result.parts:
        charts |= set(parts.unique().tolist())
    assert len(charts - {0}) >= 12  # most of the 24 body charts appear
