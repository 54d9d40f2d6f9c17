"""``ddp train`` (one run on a data directory) and ``ddp recipe`` (render, train, score,
export: the shipped weights' command)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from model.config import DDPConfig, ablate, get_config
from model.training import recipe
from model.training.loop import train
from model.training.settings import DataSettings, TrainSettings
from service.cli.network import resolve_device


def _train_settings(args: argparse.Namespace) -> TrainSettings:
    try:
        return TrainSettings(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=args.warmup,
            checkpoint_every=args.checkpoint_every,
            workers=args.workers,
            seed=args.seed,
            clip_grad_norm=args.clip_grad_norm or None,
            init_weights=Path(args.init_weights) if args.init_weights else None,
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def _training_config(args: argparse.Namespace) -> DDPConfig:
    config = ablate(get_config(args.config), args.ablation)
    if args.frozen_stages is None:
        return config
    backbone = dataclasses.replace(config.backbone, frozen_stages=args.frozen_stages)
    return config.replace(backbone=backbone)


def run_train(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    path = train(
        _training_config(args),
        Path(args.data),
        Path(args.out),
        _train_settings(args),
        resume=args.resume,
        device=device,
    )
    print(f"checkpoint: {path}")
    if args.val:
        recipe.evaluate_held_out(path, Path(args.val), Path(args.out), device=device)
    return 0


def run_recipe(args: argparse.Namespace) -> int:
    data = DataSettings(
        train_images=args.train_images,
        val_images=args.val_images,
        calibration_images=args.calibration_images,
        seed=args.data_seed,
        engine=args.engine,
        workers=args.workers,
        data_root=Path(args.data_root) if args.data_root else None,
        background_photos=args.background_photos,
        persons=args.persons,
        person_heights=args.person_heights,
    )
    recipe.run_recipe(
        _training_config(args),
        Path(args.out),
        data,
        _train_settings(args),
        export=Path(args.export) if args.export else None,
        device=resolve_device(args.device),
    )
    return 0
