"""The synthetic data engine end to end on the anny body model (slow: the first build of
anny's model data takes 1-3 min and is cached in ``.cache/anny``; later runs load in ~3 s)."""

import json
from collections.abc import Iterator
from importlib.util import find_spec

import numpy as np
import pytest
import torch

from model.cli import main
from model.data.charts import load_atlas
from model.data.loader import DensePoseCocoDataset
from model.data.scene import Renderer, SceneConfig, sample_scene
from model.data.synth import SynthConfig, clip_scenes, generate, load_renderer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_spec("anny") is None, reason="needs the 'data' extra (anny)"),
]
SMALL = SceneConfig(height=96, width=128, min_persons=2, max_persons=4)
SMALL_SHAPE = (SMALL.height, SMALL.width)


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers; float results depend on the thread count
    yield load_renderer()
    torch.set_num_threads(threads)


def test_atlas_covers_all_24_charts_with_continuous_uv(renderer):
    atlas = load_atlas(renderer.body.template)  # cached: same as the renderer's
    assert torch.equal(atlas.face_chart, renderer.atlas.face_chart)
    charts = atlas.face_chart.numpy()
    assert charts.shape == (renderer.body.template.num_faces,)
    assert set(np.unique(charts)) == set(range(1, 25))
    uv = atlas.corner_uv.numpy()
    assert uv.min() >= 0 and uv.max() <= 1
    spread = np.ptp(uv, axis=1).max(axis=1)  # largest U or V jump across one face
    for chart in range(1, 25):
        mine = spread[charts == chart]
        assert np.median(mine) < 0.15, chart  # faces are small steps in U, V ...
        assert (mine > 0.5).mean() < 0.01, chart  # ... except at the few pole/seam faces
        chart_uv = uv[charts == chart].reshape(-1, 2)
        assert np.ptp(chart_uv, axis=0).min() > 0.8, chart  # and each chart spans [0, 1]


def test_rendering_is_deterministic_and_labels_are_consistent(renderer):
    scenes = [sample_scene(np.random.default_rng(3), SMALL, renderer.pose_space) for _ in "ab"]
    a, b = (renderer.render(s, SMALL.height, SMALL.width) for s in scenes)
    for name in ("image", "parts", "uv", "instance"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    on_person = a.instance > 0
    assert on_person.any()
    assert np.array_equal(a.parts > 0, on_person)  # I > 0 exactly on instance pixels
    assert a.uv.min() >= 0 and a.uv.max() <= 1 and not a.uv[~on_person].any()
    assert a.instance.max() <= len(scenes[0].persons)


def test_empty_scene_renders_background_only(renderer):
    config = SceneConfig(height=32, width=48, min_persons=0, max_persons=0)
    scene = sample_scene(np.random.default_rng(0), config, renderer.pose_space)
    out = renderer.render(scene, config.height, config.width)
    assert out.image.shape == (32, 48, 3) and not out.parts.any() and not out.instance.any()


def test_clip_frames_move_smoothly(renderer):
    frames = clip_scenes(np.random.default_rng(1), SMALL, renderer.pose_space, 5)
    angles = np.stack([np.stack([p.angles for p in f.persons]) for f in frames])
    steps = np.diff(angles, axis=0)
    assert np.allclose(steps, steps[0], atol=1e-9)  # constant velocity between keyframes
    lower, upper = renderer.pose_space.lower, renderer.pose_space.upper
    assert np.all((angles >= lower - 1e-9) & (angles <= upper + 1e-9))


def test_synth_writes_a_dataset_the_loader_reads_back(renderer, tmp_path):
    config = SynthConfig(scene=SMALL, seed=5, points_per_person=30, min_pixels=20)
    stats = generate(tmp_path, images=3, clips=1, frames=2, config=config, progress=False)
    assert stats["images"] == 5
    dataset = DensePoseCocoDataset(tmp_path / "annotations.json")
    assert len(dataset) == 5
    assert [im.get("frame_id") for im in dataset.images] == [None, None, None, 1, 2]
    for index in range(len(dataset)):
        image, targets = dataset[index]
        parts, uv, instance = dataset.dense_labels(index)
        assert image.shape == (*SMALL_SHAPE, 3) and parts.shape == SMALL_SHAPE
        dense_ids = [a["dense_id"] for a in dataset.annotations(index) if not a["iscrowd"]]
        for person, dense_id in enumerate(dense_ids):
            assert torch.equal(targets.masks[person], torch.from_numpy(instance == dense_id))
        xy = targets.point_xy.floor().long()
        on = torch.from_numpy(instance)[xy[:, 1], xy[:, 0]].long()
        ids = torch.tensor(dense_ids, dtype=torch.long)
        assert torch.equal(on, ids[targets.point_instance])  # points lie on their instance
        assert torch.equal(torch.from_numpy(parts)[xy[:, 1], xy[:, 0]].long(), targets.point_part)
        assert torch.allclose(torch.from_numpy(uv)[xy[:, 1], xy[:, 0]], targets.point_uv, atol=1e-4)
    again = tmp_path / "again"
    generate(again, images=3, clips=1, frames=2, config=config, progress=False)
    first = json.loads((tmp_path / "annotations.json").read_text())
    assert first == json.loads((again / "annotations.json").read_text())  # deterministic


def test_cli_synth(tmp_path, capsys):
    args = ["synth", "--out", str(tmp_path), "--images", "2", "--persons", "0-1"]
    assert main([*args, "--height", "64", "--width", "80", "--workers", "1"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["images"] == 2 and stats["persons_per_image"]["max"] <= 1
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path), "--persons", "3-1"])
