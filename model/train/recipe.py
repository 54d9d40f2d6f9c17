"""The whole training recipe as one resumable command: render (or reuse) the synthetic train
and held-out sets, train, score the held-out set, export the weights that ship.

Every stage skips work already done: a data set counts once its ``annotations.json`` exists
(the data engine writes it last), training resumes from its newest checkpoint, so re-running
an interrupted recipe continues where it stopped.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.config import DDPConfig
from model.data.cache import cache_dir
from model.data.scene import SceneConfig
from model.data.synth import SynthConfig, generate
from model.evaluation.evaluator import format_summary
from model.evaluation.report import evaluate_directory
from model.predictor import Predictor
from model.train.loop import TrainSettings, train
from model.train.state import checkpoints

VAL_SEED_OFFSET = 1
"""The held-out set renders with ``seed + 1``: per-image seeds are (seed, index), so no scene
of the held-out set is a training scene."""


@dataclass(frozen=True)
class DataSettings:
    """The synthetic sets the recipe renders (sizes match the default input config)."""

    train_images: int = 4000
    val_images: int = 200
    seed: int = 0
    height: int = 384
    width: int = 512
    workers: int = 2
    data_root: Path | None = None
    """Where rendered sets are cached; None: ``<cache>/datasets``."""

    def directory(self, split: str, images: int, seed: int) -> Path:
        root = self.data_root if self.data_root is not None else cache_dir() / "datasets"
        return root / f"{split}-seed{seed}-n{images}-{self.height}x{self.width}"


def ensure_dataset(settings: DataSettings, split: str, images: int, seed: int) -> Path:
    """The directory of a rendered set, rendering it first if it is not complete.

    A partial directory (interrupted render) is removed and rendered again.
    """
    directory = settings.directory(split, images, seed)
    if (directory / "annotations.json").is_file():
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    scene = SceneConfig(height=settings.height, width=settings.width)
    print(f"rendering {images} {split} images into {directory}", flush=True)
    generate(
        directory,
        images=images,
        config=SynthConfig(scene=scene, seed=seed),
        workers=settings.workers,
    )
    return directory


def run_recipe(
    config: DDPConfig,
    out_dir: Path,
    data: DataSettings,
    training: TrainSettings,
    *,
    export: Path | None,
    device: torch.device,
) -> dict[str, Any]:
    """Data, training (resumed if ``out_dir`` holds checkpoints), held-out scores in
    ``out_dir/eval.json``, and the final weights copied to ``export`` (+ its config .json).
    Returns the held-out report."""
    train_dir = ensure_dataset(data, "train", data.train_images, data.seed)
    val_dir = ensure_dataset(data, "val", data.val_images, data.seed + VAL_SEED_OFFSET)
    weights = train(
        config,
        train_dir,
        out_dir,
        training,
        resume=bool(checkpoints(out_dir)),
        device=device,
    )
    report = evaluate_held_out(weights, val_dir, out_dir, device=device)
    if export is not None:
        export.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, export)
        shutil.copyfile(weights.with_suffix(".json"), export.with_suffix(".json"))
        print(f"exported {export} ({export.stat().st_size / 2**20:.1f} MiB)", flush=True)
    return report


def evaluate_held_out(
    weights: Path, val_dir: Path, out_dir: Path, *, device: torch.device
) -> dict[str, Any]:
    """Score ``weights`` on ``val_dir``; print the table and write ``out_dir/eval.json``."""
    predictor = Predictor.from_checkpoint(weights, device=str(device))
    report = {"weights": str(weights), **evaluate_directory(predictor, val_dir)}
    print(format_summary(report), flush=True)
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
