"""The training loop: data workers, SGD steps, a progress bar, periodic checkpoints, resume."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.config import DDPConfig
from model.data.loader import DensePoseCocoDataset
from model.network.ddp import DDP, build_ddp
from model.training.data import StepSampler, TrainBatch, TrainingDataset, collate
from model.training.objective import compute_losses
from model.training.schedule import build_optimizer, learning_rate, set_learning_rate
from model.training.settings import TrainSettings
from model.training.state import (
    checkpoints,
    load_training_state,
    save_training_state,
    weights_path,
)


def train(
    config: DDPConfig,
    data_dir: Path,
    out_dir: Path,
    settings: TrainSettings,
    *,
    resume: bool = False,
    device: torch.device | str = "cpu",
) -> Path:
    """Train on ``data_dir/annotations.json`` up to ``settings.steps``; the last checkpoint.

    With ``resume``, continue from the newest checkpoint in ``out_dir`` (its network config
    wins over ``config``): weights, optimiser momentum, step, LR schedule and data order.
    """
    device = torch.device(device)
    annotations = Path(data_dir) / "annotations.json"
    if not annotations.is_file():
        raise FileNotFoundError(f"no {annotations} (write a set with `ddp synth --out DIR`)")
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = checkpoints(out_dir)
    if saved and not resume:
        raise FileExistsError(f"{out_dir} holds checkpoints: resume, or train into another --out")

    def optimizer_for(model: DDP) -> torch.optim.Optimizer:
        return build_optimizer(model.parameters(), lr=settings.lr)

    model: DDP
    optimizer: torch.optim.Optimizer
    if resume and saved:
        model, config, optimizer, step = load_training_state(
            saved[-1], optimizer_for, device=device
        )
    elif resume:
        raise FileNotFoundError(f"--resume: no checkpoint in {out_dir}")
    else:
        torch.manual_seed(settings.seed)
        model = build_ddp(config, device=device, load_pretrained=settings.init_weights is None)
        if settings.init_weights is not None:
            initial = load_file(str(settings.init_weights), device=str(device))
            model.load_state_dict(initial)  # strict: the same network as ``config``
        optimizer, step = optimizer_for(model), 0
    model.train()

    dataset = TrainingDataset(DensePoseCocoDataset(annotations), config.input)
    loader = DataLoader(
        dataset,
        batch_size=settings.batch_size,
        sampler=StepSampler(len(dataset), seed=settings.seed, start=step * settings.batch_size),
        num_workers=settings.workers,
        collate_fn=partial(collate, size_divisibility=config.input.size_divisibility),
    )
    run = {"data": str(data_dir), **dataclasses.asdict(settings)}
    run["init_weights"] = str(settings.init_weights) if settings.init_weights else None
    warmup = min(settings.warmup_steps, settings.steps)
    batches = iter(loader)
    with (
        (out_dir / "log.jsonl").open("a") as log,
        tqdm(total=settings.steps, initial=step, desc="train", unit="step", file=sys.stderr) as bar,
    ):
        while step < settings.steps:
            batch: TrainBatch = next(batches)
            lr = learning_rate(
                step, base_lr=settings.lr, total_steps=settings.steps, warmup_steps=warmup
            )
            set_learning_rate(optimizer, lr)
            losses = compute_losses(
                model,
                batch.images.to(device),
                batch.targets,
                config,
                generator=torch.Generator().manual_seed(settings.seed + step),
            )
            values = {name: float(value.detach()) for name, value in losses.items()}
            if not math.isfinite(values["total"]):
                raise FloatingPointError(f"step {step}: non-finite loss {values}")
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            if settings.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad_norm)
            optimizer.step()
            step += 1
            log.write(json.dumps({"step": step, "lr": lr, **values}) + "\n")
            bar.set_postfix({name: f"{value:.3f}" for name, value in values.items()}, refresh=False)
            bar.update()
            if step % settings.checkpoint_every == 0 or step == settings.steps:
                save_training_state(
                    out_dir,
                    step=step,
                    model=model,
                    config=config,
                    optimizer=optimizer,
                    run=run,
                    keep=settings.keep_checkpoints,
                )
    return weights_path(checkpoints(out_dir)[-1])
