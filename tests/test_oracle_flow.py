"""The exact flow of labelled persons (benchmarks.oracle_flow) against a known motion."""

import cv2
import numpy as np
import pytest
import torch

from benchmarks.oracle_flow import OracleFlow


def moving_person(frames=3, height=64, width=80, step=2):
    """Frames and labels of a 30x20 'person' (chart 2, distinct U, V per pixel) moving
    ``step`` px right per frame over a textured background; every frame a different texture
    under the person, so only the labels can tell where it went."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for frame in range(frames):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        parts = np.zeros((height, width), np.uint8)
        uv = np.zeros((height, width, 2), np.float32)
        x0 = 10 + step * frame
        parts[20:50, x0 : x0 + 20] = 2
        uv[20:50, x0 : x0 + 20, 0] = np.linspace(0, 1, 20)[None]
        uv[20:50, x0 : x0 + 20, 1] = np.linspace(0, 1, 30)[:, None]
        images.append(image)
        labels.append((parts, uv, (parts > 0).astype(np.uint8)))
    return images, labels


def half(array, nearest=False):
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return cv2.resize(
        array, (array.shape[1] // 2, array.shape[0] // 2), interpolation=interpolation
    )


def zero_flow(sources, targets):
    height, width = sources[0].shape[:2]
    return torch.zeros(len(sources), 2, height, width)


def test_exact_on_the_person_fallback_elsewhere():
    images, labels = moving_person()
    oracle = OracleFlow(images, labels, zero_flow)
    flows = oracle([images[0], images[2], images[1]], [images[1], images[0], images[1]])
    person = labels[0][0] > 0
    assert torch.equal(flows[0, 0][torch.from_numpy(person)], torch.full((600,), 2.0))
    assert torch.all(flows[0, 1] == 0)
    assert torch.all(flows[0, 0][torch.from_numpy(~person)] == 0)  # the fallback's
    person_2 = torch.from_numpy(labels[2][0] > 0)
    assert torch.equal(flows[1, 0][person_2], torch.full((600,), -4.0))  # two frames back
    assert torch.all(flows[2] == 0)  # a frame onto itself
    assert oracle.pixels_matched == oracle.pixels_person == 3 * 600


def test_hidden_points_keep_the_fallback():
    """A point of frame a whose chart and (U, V) frame b does not show has no exact flow."""
    images, labels = moving_person(frames=2)
    parts_b, uv_b, _ = labels[1]
    hidden = parts_b.copy()
    hidden[20:50, 12 + 10 :] = 0  # frame b shows only the person's left half
    labels[1] = (hidden, uv_b, (hidden > 0).astype(np.uint8))
    oracle = OracleFlow(images, labels, lambda s, t: torch.full((1, 2, 64, 80), 7.0))
    flow = oracle([images[0]], [images[1]])[0, 0]
    assert torch.all(flow[20:50, 10:20] == 2.0)  # the half frame b shows
    assert torch.all(flow[20:50, 20:30] == 7.0)  # the hidden half: the fallback
    assert oracle.pixels_matched == 300


def test_resized_frames_are_recognised():
    """The video pipeline passes frames resized to the network's input; the flow is in the
    resized frame's pixels."""
    images, labels = moving_person(frames=2, height=64, width=80, step=4)
    oracle = OracleFlow(images, labels, zero_flow)
    small = [half(image) for image in images]
    flow = oracle([small[0]], [small[1]])[0, 0]
    parts_small = half(labels[0][0], nearest=True) > 0
    assert torch.allclose(flow[torch.from_numpy(parts_small)], torch.tensor(2.0), atol=1.0)
    assert flow[torch.from_numpy(parts_small)].mean().item() == pytest.approx(2.0, abs=0.2)


def test_a_frame_from_elsewhere_is_refused():
    images, labels = moving_person(frames=2)
    oracle = OracleFlow(images, labels, zero_flow)
    stranger = np.zeros_like(images[0])
    with pytest.raises(ValueError, match="not one of the clip's"):
        oracle([stranger], [images[0]])
