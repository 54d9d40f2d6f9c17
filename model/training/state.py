"""Resumable training checkpoints in ``--out``, no pickle anywhere.

Step ``s`` writes ``step_<s>.safetensors`` (+ ``.json``: the network, ``save_checkpoint``),
``step_<s>.optimizer.safetensors`` (the optimiser's per-parameter tensors, e.g. SGD momentum)
and, last, ``step_<s>.state.json`` (the step and run settings): a checkpoint counts only once
its state file exists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import DDPConfig
from model.network.ddp import DDP

STATE_SUFFIX = ".state.json"


def _stem(out_dir: Path, step: int) -> Path:
    return out_dir / f"step_{step:07d}"


def weights_path(stem: Path) -> Path:
    return stem.with_name(stem.name + ".safetensors")


def _optimizer_path(stem: Path) -> Path:
    return stem.with_name(stem.name + ".optimizer.safetensors")


def _state_path(stem: Path) -> Path:
    return stem.with_name(stem.name + STATE_SUFFIX)


def save_training_state(
    out_dir: Path,
    *,
    step: int,
    model: DDP,
    config: DDPConfig,
    optimizer: torch.optim.Optimizer,
    run: dict[str, Any],
    keep: int,
) -> Path:
    """Write the checkpoint of ``step`` and delete all but the newest ``keep``; its weights path."""
    stem = _stem(out_dir, step)
    path = save_checkpoint(model, config, weights_path(stem))
    tensors: dict[str, torch.Tensor] = {}
    for index, values in optimizer.state_dict()["state"].items():
        for name, value in values.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"optimiser state {name!r} is a {type(value).__name__}, not a tensor"
                )
            tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
    save_file(tensors, str(_optimizer_path(stem)))
    _state_path(stem).write_text(json.dumps({"step": step, "run": run}, indent=2) + "\n")
    for old in checkpoints(out_dir)[:-keep]:
        for file in (
            _state_path(old),
            _optimizer_path(old),
            weights_path(old),
            old.with_suffix(".json"),
        ):
            file.unlink(missing_ok=True)
    return path


def checkpoints(out_dir: Path) -> list[Path]:
    """Stems of the complete checkpoints in ``out_dir``, oldest first."""
    states = sorted(Path(out_dir).glob(f"step_*{STATE_SUFFIX}"))
    return [state.with_name(state.name.removesuffix(STATE_SUFFIX)) for state in states]


def load_training_state(
    stem: Path, optimizer_for: Callable[[DDP], torch.optim.Optimizer], *, device: torch.device
) -> tuple[DDP, DDPConfig, torch.optim.Optimizer, int]:
    """Network, config, optimiser (built by ``optimizer_for(model)``, state restored), step."""
    model, config = load_checkpoint(weights_path(stem), device=device)
    optimizer = optimizer_for(model)
    state = optimizer.state_dict()
    restored: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(_optimizer_path(stem)), device=str(device)).items():
        index, name = key.split(".", 1)
        restored.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": restored, "param_groups": state["param_groups"]})
    step = int(json.loads(_state_path(stem).read_text())["step"])
    return model, config, optimizer, step
