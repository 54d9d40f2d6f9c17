"""Person-free training images (hard negatives): written, read back and batched without
annotations, next to an image with a person."""

import json

import numpy as np
import pytest
import torch

from model.config import InputConfig
from model.data.loader import DensePoseCocoDataset
from model.data.photometric import PhotometricConfig, finish_image, sample_photometric
from model.data.scene import RenderedScene
from model.data.synth import SynthConfig, Written, dataset_json, write_rendered
from model.training.data import TrainingDataset, collate

HEIGHT, WIDTH = 48, 64


def _rendered(with_person: bool) -> RenderedScene:
    rng = np.random.default_rng(int(with_person))
    camera = sample_photometric(rng, PhotometricConfig())
    backdrop = rng.uniform(0, 1, size=(HEIGHT, WIDTH, 3)).astype(np.float32)
    image = finish_image(backdrop, blur=0.5, noise=0.02, rng=rng, camera=camera)
    parts = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    uv = np.zeros((HEIGHT, WIDTH, 2), dtype=np.float32)
    instance = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    if with_person:
        parts[10:40, 20:35], instance[10:40, 20:35] = 2, 1
        uv[10:40, 20:35] = 0.5
    return RenderedScene(image=image, parts=parts, uv=uv, instance=instance)


def _write(tmp_path, people: list[bool]) -> DensePoseCocoDataset:
    config = SynthConfig(points_per_person=20, min_pixels=10)
    written: list[Written] = []
    for index, person in enumerate(people):
        rng = np.random.default_rng(index)
        written.append(write_rendered(tmp_path, f"{index:06d}", _rendered(person), config, rng, {}))
    (tmp_path / "annotations.json").write_text(json.dumps(dataset_json(written)))
    return DensePoseCocoDataset(tmp_path / "annotations.json")


def test_negative_images_are_written_with_no_annotations_and_load_as_empty_targets(tmp_path):
    dataset = _write(tmp_path, [False, True, False])
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert [im["id"] for im in data["images"]] == [1, 2, 3]
    assert {a["image_id"] for a in data["annotations"]} == {2}
    for index in (0, 2):
        image, targets = dataset[index]
        assert image.shape == (HEIGHT, WIDTH, 3) and dataset.annotations(index) == []
        assert len(targets) == 0 and targets.masks.shape == (0, HEIGHT, WIDTH)
        parts, _, instance = dataset.dense_labels(index)
        assert not parts.any() and not instance.any()
    assert len(dataset.targets(1)) == 1


def test_a_batch_of_negatives_and_a_person_collates_for_training(tmp_path):
    dataset = _write(tmp_path, [False, True, False])
    training = TrainingDataset(dataset, InputConfig())
    batch = collate([training[i] for i in range(3)], size_divisibility=32)
    assert batch.images.shape[0] == 3 and batch.images.shape[-2] % 32 == 0
    assert [len(t) for t in batch.targets] == [0, 1, 0]
    empty = batch.targets[0]
    assert empty.masks.shape[0] == 0 and empty.point_xy.shape == (0, 2)
    assert torch.isfinite(batch.images).all()


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_negative_fraction_must_be_a_share(fraction):
    with pytest.raises(ValueError, match="negative_fraction"):
        SynthConfig(negative_fraction=fraction)
