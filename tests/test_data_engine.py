"""The synthetic data engine end to end on the anny body model (slow: the first build of
anny's model data takes 1-3 min and is cached in ``.cache/anny``; later runs load in ~3 s)."""

import dataclasses
import json
from collections.abc import Iterator
from importlib.util import find_spec

import cv2
import numpy as np
import pytest
import torch

from model.data.appearance import sample_outfit
from model.data.backgrounds import BackgroundPool
from model.data.charts import load_atlas
from model.data.coco import person_annotations
from model.data.distractors import Distractor, polygon_mask
from model.data.loader import DensePoseCocoDataset
from model.data.scene import Renderer, SceneConfig, sample_scene
from model.data.synth import SynthConfig, clip_scenes, generate, legacy, load_renderer
from service.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_spec("anny") is None, reason="needs the 'data' extra (anny)"),
]
SMALL = SceneConfig(height=96, width=128, min_persons=2, max_persons=4)
SMALL_SHAPE = (SMALL.height, SMALL.width)


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> BackgroundPool:
    """Small synthetic "photographs" (noise and a gradient) as the background pool."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    noise = cv2.resize(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8), (160, 120))
    ramp = np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None].repeat(90, 0).repeat(3, 2)
    cv2.imwrite(str(root / "noise.jpg"), noise)
    cv2.imwrite(str(root / "ramp.png"), ramp)
    return BackgroundPool.from_directory(root)


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


def test_the_new_recipe_with_photos_is_deterministic_and_labels_are_consistent(renderer, pool):
    config = dataclasses.replace(SMALL, backgrounds=pool)
    scenes = [sample_scene(np.random.default_rng(8), config, renderer.pose_space) for _ in "ab"]
    assert scenes[0].backdrop is not None and scenes[0].lighting is not None
    assert scenes[0].photometric is not None and scenes[0].persons[0].outfit.hair_back > 0
    a, b = (renderer.render(s, SMALL.height, SMALL.width) for s in scenes)
    for name in ("image", "parts", "uv", "instance"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    on_person = a.instance > 0
    assert np.array_equal(a.parts > 0, on_person) and not a.uv[~on_person].any()
    assert a.image.dtype == np.uint8 and a.image.shape == (*SMALL_SHAPE, 3)


def test_legacy_turns_every_addition_off(renderer, pool):
    config = legacy(SynthConfig(scene=dataclasses.replace(SMALL, backgrounds=pool)))
    assert config.negative_fraction == 0.0
    scene = sample_scene(np.random.default_rng(8), config.scene, renderer.pose_space)
    assert scene.backdrop is None and scene.lighting is None and scene.photometric is None
    assert scene.distractors == () and scene.persons[0].outfit.hair_back == 0.0


def _occluder(x0: float, x1: float, depth: float) -> Distractor:
    """A grey card over the columns [x0, x1) (fractions of the width), full height."""
    return Distractor(
        polygon=np.array([[x0, -0.1], [x1, -0.1], [x1, 1.1], [x0, 1.1]]),
        depth=depth,
        pattern=dataclasses.replace(sample_outfit(np.random.default_rng(0)).top, pattern="solid"),
        photo=None,
        shading=np.array([1.0, 0.0, 0.0]),
    )


def test_occluders_remove_exactly_the_labels_they_hide(renderer):
    config = SceneConfig(height=96, width=128, min_persons=1, max_persons=1, scale_range=(0.9, 1))
    scene = sample_scene(np.random.default_rng(2), config, renderer.pose_space)
    scene = dataclasses.replace(scene, distractors=(), photometric=None)
    person_depth = float(
        (scene.persons[0].position - scene.camera.position) @ scene.camera.rotation()[2]
    )
    clear = renderer.render(scene, 96, 128)
    columns = np.nonzero((clear.instance > 0).any(axis=0))[0]
    middle = (columns.min() + columns.max() + 1) / 2 / 128  # cover the person's left half
    front = dataclasses.replace(scene, distractors=(_occluder(0.0, middle, person_depth - 0.5),))
    behind = dataclasses.replace(scene, distractors=(_occluder(0.0, middle, person_depth + 3),))
    hidden = renderer.render(front, 96, 128)
    covered = polygon_mask(front.distractors[0], 96, 128)
    assert (
        covered[:, : int(middle * 128) - 1].all() and not covered[:, int(middle * 128) + 1 :].any()
    )
    assert clear.instance[covered].any() and not hidden.instance[covered].any()
    for name in ("parts", "uv", "instance"):
        assert np.array_equal(getattr(hidden, name)[~covered], getattr(clear, name)[~covered])
        assert not getattr(hidden, name)[covered].any()
        assert np.array_equal(getattr(renderer.render(behind, 96, 128), name), getattr(clear, name))
    annotations = person_annotations(
        hidden.parts, hidden.uv, hidden.instance, np.random.default_rng(0), num_points=20,
        min_pixels=10,
    )  # fmt: skip
    x = annotations[0]["bbox"][0]
    assert x >= int(middle * 128) and annotations[0]["area"] == (hidden.instance > 0).sum()
    everything = dataclasses.replace(scene, distractors=(_occluder(-0.1, 1.1, 0.3),))
    gone = renderer.render(everything, 96, 128)
    assert not gone.instance.any()  # a person wholly behind an occluder is not annotated
    assert (
        person_annotations(
            gone.parts,
            gone.uv,
            gone.instance,
            np.random.default_rng(0),
            num_points=20,
            min_pixels=10,
        )
        == []
    )


def test_negative_images_have_no_annotations_and_load(renderer, pool, tmp_path):
    scene = dataclasses.replace(SMALL, backgrounds=pool)
    config = SynthConfig(scene=scene, seed=2, points_per_person=10, negative_fraction=1.0)
    stats = generate(tmp_path, images=2, config=config, progress=False)
    assert stats["images"] == 2 and stats["persons"] == 0 and stats["ignored_persons"] == 0
    dataset = DensePoseCocoDataset(tmp_path / "annotations.json")
    for index in range(len(dataset)):
        image, targets = dataset[index]
        assert image.shape == (*SMALL_SHAPE, 3) and len(targets) == 0
        assert not dataset.dense_labels(index)[2].any()
