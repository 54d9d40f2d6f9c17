"""The weights in ``weights/`` are the trained default network the service and CLI load."""

import dataclasses
import json
from pathlib import Path

import pytest

from model.checkpoint import read_config
from model.config import DDPConfig, default_config
from model.inference.images import read_image_rgb
from model.inference.predictor import Predictor
from model.paths import DEFAULT_WEIGHTS

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "synthetic_scene.jpg"


def _as_trained(config: DDPConfig) -> DDPConfig:
    """``config`` without what the recipe sets on top of the preset: the frozen backbone stages
    it trained with and the detection settings chosen on its validation set."""
    preset = default_config()
    instance = dataclasses.replace(
        config.instance,
        detection_score_threshold=preset.instance.detection_score_threshold,
        mask_nms=preset.instance.mask_nms,
        mask_nms_threshold=preset.instance.mask_nms_threshold,
    )
    backbone = dataclasses.replace(config.backbone, frozen_stages=preset.backbone.frozen_stages)
    return config.replace(instance=instance, backbone=backbone)


def test_shipped_weights_are_the_default_config_and_small_enough_for_git():
    assert DEFAULT_WEIGHTS.stat().st_size <= 50 * 2**20
    config = read_config(DEFAULT_WEIGHTS)
    assert _as_trained(config) == default_config()
    sidecar = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert DDPConfig.from_dict(sidecar) == config


@pytest.fixture(scope="module")
def example_result():
    predictor = Predictor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu")
    return predictor([read_image_rgb(EXAMPLE)])[0]


def test_shipped_weights_find_both_people_of_the_example_with_charts(example_result):
    # examples/synthetic_scene.jpg is held-out image 1 (seed 1): two people, one on each side.
    boxes = example_result.boxes_xyxy  # the persons kept at the network's own threshold
    centres_x = ((boxes[:, 0] + boxes[:, 2]) / 2).tolist()
    assert any(x < 256 for x in centres_x) and any(x > 256 for x in centres_x)
    labelled = [int((parts > 0).sum()) for parts in example_result.parts]
    assert max(labelled) > 2000  # pixels with a body chart on the best-covered person
    charts = set()
    for parts in example_result.parts:
        charts |= set(parts.unique().tolist())
    assert len(charts - {0}) >= 12  # most of the 24 body charts appear
