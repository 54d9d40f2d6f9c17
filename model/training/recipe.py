"""The whole training recipe as one resumable command: render (or reuse) the synthetic
training, held-out and validation sets, train, choose the detection settings on the validation
set, score the held-out set and the real photos, export the weights that ship.

Every stage skips work already done: a data set counts once its ``annotations.json`` exists
(the data engine writes it last), training resumes from its newest checkpoint, so re-running
an interrupted recipe continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import save_checkpoint
from model.config import DDPConfig
from model.data.backgrounds import BackgroundPool
from model.data.photos import load_manifest, missing_photos_message, photo_path
from model.data.scene import SceneConfig
from model.data.synth import SynthConfig, generate, legacy
from model.evaluation.evaluator import format_summary
from model.evaluation.photos import evaluate_photos
from model.evaluation.report import evaluate_directory
from model.inference.predictor import Predictor
from model.training.calibrate import candidates_table, choose_detection_settings
from model.training.loop import train
from model.training.settings import DataSettings, DataSplit, TrainSettings
from model.training.state import checkpoints


def training_backgrounds(count: int) -> BackgroundPool:
    """The first ``count`` person-free photographs of ``model.data.photos``' training pool
    (never the evaluation photos); raises ``PhotoUnavailable`` with the install commands if
    missing."""
    pool = load_manifest().training_pool[:count]
    return BackgroundPool.from_paths([photo_path(entry) for entry in pool])


def ensure_dataset(split: DataSplit) -> Path:
    """The directory of a rendered set, rendering it first if it is not complete.

    A partial directory (interrupted render) is removed and rendered again.
    """
    directory, settings = split.directory, split.data
    if (directory / "annotations.json").is_file():
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    scene = SceneConfig(height=settings.height, width=settings.width)
    if settings.persons is not None:
        scene = dataclasses.replace(
            scene, min_persons=settings.persons[0], max_persons=settings.persons[1]
        )
    if settings.person_heights is not None:
        scene = dataclasses.replace(scene, scale_range=settings.person_heights)
    synth = SynthConfig(scene=scene, seed=split.seed)
    if split.engine == "plain":
        synth = legacy(synth)
    else:
        synth = dataclasses.replace(
            synth,
            scene=dataclasses.replace(
                scene, backgrounds=training_backgrounds(settings.photo_count())
            ),
        )
    what = f"{split.images} {split.split} images ({split.engine})"
    print(f"rendering {what} into {directory}", flush=True)
    generate(directory, images=split.images, config=synth, workers=settings.workers)
    return directory


def held_out_set(data: DataSettings) -> Path:
    """The held-out set Table 1 is scored on (``DataSettings.held_out_split``), rendered
    first where it is not there yet."""
    return ensure_dataset(data.held_out_split())


def calibration_set(data: DataSettings) -> Path:
    """The validation set detection settings are chosen on (and the int8 export calibrates
    on; ``DataSettings.calibration_split``), rendered first where it is not there yet."""
    return ensure_dataset(data.calibration_split())


def run_recipe(
    config: DDPConfig,
    out_dir: Path,
    data: DataSettings,
    training: TrainSettings,
    *,
    export: Path | None,
    device: torch.device,
) -> dict[str, Any]:
    """Data, training (resumed if ``out_dir`` holds checkpoints), detection settings chosen on
    the validation set (``out_dir/calibration.md``), the final weights with them
    (``out_dir/final.safetensors``), held-out scores (``out_dir/eval.json``), real-photo
    scores where the photos are installed (``out_dir/real_photos.json``), and the final
    weights copied to ``export`` (+ its config .json). Returns the held-out report."""
    train_dir = ensure_dataset(data.training_split())
    held_out_dir = held_out_set(data)
    weights = train(
        config,
        train_dir,
        out_dir,
        training,
        resume=bool(checkpoints(out_dir)),
        device=device,
    )
    final = calibrate(weights, out_dir, data, device=device)
    report = evaluate_held_out(final, held_out_dir, out_dir, device=device)
    score_real_photos(final, out_dir, device=device)
    if export is not None:
        export.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(final, export)
        shutil.copyfile(final.with_suffix(".json"), export.with_suffix(".json"))
        print(f"exported {export} ({export.stat().st_size / 2**20:.1f} MiB)", flush=True)
    return report


def calibrate(weights: Path, out_dir: Path, data: DataSettings, *, device: torch.device) -> Path:
    """``out_dir/final.safetensors``: ``weights`` with the detection threshold and mask NMS
    chosen on the validation set (the config's own with ``calibration_images`` = 0)."""
    predictor = Predictor.from_checkpoint(weights, device=str(device))
    config = predictor.config
    if data.calibration_images > 0:
        calibration_dir = calibration_set(data)
        config, candidates = choose_detection_settings(predictor, calibration_dir)
        table = candidates_table(candidates)
        (out_dir / "calibration.md").write_text(
            f"Detection settings on {calibration_dir.name} (best F1 first):\n\n{table}"
        )
        print(table, flush=True)
    final = out_dir / "final.safetensors"
    save_checkpoint(predictor.model, config, final)
    return final


def score_real_photos(weights: Path, out_dir: Path, *, device: torch.device) -> None:
    """Real-photo scores of ``weights`` into ``out_dir/real_photos.json``, if the photos are
    installed (``python -m model.data.photos --check`` says how)."""
    manifest = load_manifest()
    missing = missing_photos_message(manifest.photos)
    if missing is not None:
        print(f"real photos not scored: {missing}", flush=True)
        return
    predictor = Predictor.from_checkpoint(weights, device=str(device))
    report = evaluate_photos(predictor, manifest.photos)
    print(f"real photos: {json.dumps(report['totals'])}", flush=True)
    (out_dir / "real_photos.json").write_text(json.dumps(report, indent=2) + "\n")


def evaluate_held_out(
    weights: Path, val_dir: Path, out_dir: Path, *, device: torch.device
) -> dict[str, Any]:
    """Score ``weights`` on ``val_dir``; print the table and write ``out_dir/eval.json``."""
    predictor = Predictor.from_checkpoint(weights, device=str(device))
    report = {"weights": str(weights), **evaluate_directory(predictor, val_dir)}
    print(format_summary(report), flush=True)
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
