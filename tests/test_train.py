"""``ddp train`` on toy scenes: data rescaling, the LR schedule, checkpoints and resume."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_evaluation_metrics import write_toy_dataset

from model.checkpoint import load_checkpoint
from model.config import tiny_config
from model.data.loader import DensePoseCocoDataset
from model.inference.preprocess import image_to_tensor, prepare_batch
from model.training.data import StepSampler, TrainingDataset, collate
from model.training.schedule import learning_rate
from model.training.state import checkpoints, weights_path
from service.cli import main

TRAIN = ["--config", "tiny", "--batch-size", "2", "--workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    write_toy_dataset(root)
    return root


@pytest.fixture(scope="module")
def straight_run(toy_dir, tmp_path_factory):
    """Six steps in one go, checkpoints at 3 and 6."""
    out = tmp_path_factory.mktemp("run")
    args = ["train", "--data", str(toy_dir), "--out", str(out), "--steps", "6"]
    assert main([*args, *TRAIN, "--warmup", "2", "--checkpoint-every", "3"]) == 0
    return out


def test_learning_rate_warms_up_then_decays_at_77_and_92_percent():
    def lr(step):
        return learning_rate(step, base_lr=0.1, total_steps=100, warmup_steps=10)

    assert lr(0) == pytest.approx(0.1 * 0.001)
    assert lr(5) == pytest.approx(0.1 * (0.001 + 0.999 * 0.5))
    assert lr(10) == lr(76) == pytest.approx(0.1)
    assert lr(77) == lr(91) == pytest.approx(0.01)
    assert lr(92) == lr(99) == pytest.approx(0.001)


def test_dataset_resizes_like_prepare_batch_and_keeps_points_on_masks(toy_dir):
    config = tiny_config().input
    coco = DensePoseCocoDataset(toy_dir / "annotations.json")
    dataset = TrainingDataset(coco, config)
    on_mask = total = 0
    for index in range(len(dataset)):
        image, targets = dataset[index]
        original = image_to_tensor(coco.image_rgb(index))
        expected = prepare_batch([original], config)
        height, width = expected.image_sizes[0].tolist()
        assert image.shape == (3, height, width) and (height, width) != original.shape[-2:]
        torch.testing.assert_close(image, expected.images[0, :, :height, :width])
        assert targets.masks.shape[-2:] == (height, width)
        if len(targets) == 0:
            continue
        assert (targets.boxes_xyxy[:, 2] <= width + 1e-4).all()
        assert (targets.boxes_xyxy[:, 3] <= height + 1e-4).all()
        body = targets.point_part > 0
        x, y = targets.point_xy[body].floor().long().unbind(1)
        on_mask += int(targets.dp_masks[targets.point_instance[body], y, x].sum())
        total += int(body.sum())
    assert total > 0 and on_mask == total


def test_collate_pads_to_a_multiple_of_32(toy_dir):
    dataset = TrainingDataset(
        DensePoseCocoDataset(toy_dir / "annotations.json"), tiny_config().input
    )
    batch = collate([dataset[0], dataset[2]], size_divisibility=32)
    assert batch.images.shape[0] == 2 and batch.images.shape[-2] % 32 == 0
    assert batch.images.shape[-1] % 32 == 0 and len(batch.targets[1]) == 0  # scene 3: nobody


def test_sampler_resumes_the_same_stream():
    sampler = iter(StepSampler(4, seed=1))
    stream = [next(sampler) for _ in range(10)]
    assert sorted(stream[:4]) == [0, 1, 2, 3]
    resumed = iter(StepSampler(4, seed=1, start=6))
    assert [next(resumed) for _ in range(4)] == stream[6:]


def test_train_writes_loadable_checkpoints_and_a_log(straight_run):
    stems = checkpoints(straight_run)
    assert [s.name for s in stems] == ["step_0000003", "step_0000006"]
    _, config = load_checkpoint(weights_path(stems[-1]))  # strict: every weight present
    assert config == tiny_config()
    assert json.loads(stems[-1].with_name("step_0000006.state.json").read_text())["step"] == 6
    log = [json.loads(line) for line in (straight_run / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4, 5, 6]
    assert all(row["total"] > 0 for row in log) and log[0]["lr"] < log[2]["lr"]


def test_resume_continues_from_the_saved_step_to_the_same_weights(straight_run, toy_dir, tmp_path):
    for file in straight_run.glob("step_0000003*"):
        shutil.copy(file, tmp_path / file.name)
    args = ["train", "--data", str(toy_dir), "--out", str(tmp_path), "--steps", "6"]
    assert main([*args, *TRAIN, "--warmup", "2", "--checkpoint-every", "3", "--resume"]) == 0
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [4, 5, 6]
    resumed = load_file(str(tmp_path / "step_0000006.safetensors"))
    straight = load_file(str(straight_run / "step_0000006.safetensors"))
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, msg=name)


def test_training_over_old_checkpoints_needs_resume(straight_run, toy_dir):
    args = ["train", "--data", str(toy_dir), "--out", str(straight_run), "--steps", "6"]
    with pytest.raises(FileExistsError, match="resume"):
        main([*args, *TRAIN])
