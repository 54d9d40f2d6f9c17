"""The evaluator on the body model's mesh and on a small synthetic set (slow: needs anny's
model data, built once into ``.cache/anny``; the geodesics take ~45 s once, then load from
``.cache/geodesic``)."""

from importlib.util import find_spec

import numpy as np
import pytest
import torch

from model.data.labels import as_result
from model.data.loader import DensePoseCocoDataset
from model.data.scene import SceneConfig
from model.data.synth import SynthConfig, generate
from model.evaluation.evaluator import evaluate
from model.evaluation.geodesic import load_body_geodesics

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_spec("anny") is None, reason="needs the 'data' extra (anny)"),
]


@pytest.fixture(scope="module")
def geodesics():
    return load_body_geodesics()


def test_body_geodesics_are_a_metric_on_the_body_component(geodesics):
    d = geodesics.distances.astype(np.float64)
    assert d.shape == (3000, 3000) and np.isfinite(d).all()
    assert np.array_equal(d, d.T) and not np.diag(d).any()
    i, j, k = np.random.default_rng(0).integers(0, len(d), size=(3, 100_000))
    assert (d[i, k] <= d[i, j] + d[j, k] + 1e-5).all()
    assert 1.7 < d.max() < 2.5  # fingertip to fingertip / toe, metres
    on_body = np.isfinite(geodesics.spacing)
    assert (~on_body).sum() == 370  # tongue and eyes: not sampled
    assert geodesics.spacing[on_body].max() < 0.02
    # every chart is reachable, and points on the eyes' charts land on the head's skin
    parts = np.arange(1, 25)
    samples = geodesics.nearest_samples(parts, np.full((24, 2), 0.5))
    assert (samples >= 0).all()


def test_synthetic_ground_truth_scores_100_and_noise_lowers_it(geodesics, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    scene = SceneConfig(height=128, width=160, min_persons=2, max_persons=3)
    generate(tmp_path, images=3, config=SynthConfig(scene=scene, seed=2), progress=False)
    torch.set_num_threads(threads)
    dataset = DensePoseCocoDataset(tmp_path / "annotations.json")
    truth = [as_result(*dataset.dense_labels(i)) for i in range(len(dataset))]
    metrics = evaluate(truth, dataset, geodesics=geodesics)
    assert metrics["gps_ap"] == pytest.approx(100.0) and metrics["mask_ap"] == pytest.approx(100.0)
    rng = np.random.default_rng(0)
    for result in truth:
        for crop, parts in zip(result.uv, result.parts, strict=True):
            noise = torch.from_numpy(rng.normal(0, 0.3, crop.shape).astype(np.float32))
            crop.copy_((crop + noise).clamp(0, 1) * (parts > 0))
    noisy = evaluate(truth, dataset, geodesics=geodesics)
    assert noisy["gps_ap"] < 90 and noisy["mask_ap"] == pytest.approx(100.0)
