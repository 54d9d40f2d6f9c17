"""Checkpoints: weights in safetensors (no pickle), the config as JSON inside its metadata and
in a sidecar ``.json`` file a person can read."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from model.config import DDPConfig
from model.network.ddp import DDP, build_ddp

CONFIG_KEY = "ddp_config"


def random_checkpoint(
    path: Path, config: DDPConfig, *, persons: bool = True, seed: int = 0
) -> Path:
    """A random network of ``config`` saved at ``path``. With ``persons`` its detection
    thresholds are 0 and it keeps 3 detections, so every image yields 3 (deterministic)
    persons."""
    if persons:
        instance = dataclasses.replace(
            config.instance,
            candidate_score_threshold=0.0,
            detection_score_threshold=0.0,
            max_detections=3,
        )
        config = config.replace(instance=instance)
    torch.manual_seed(seed)
    return save_checkpoint(build_ddp(config), config, path)


def save_checkpoint(model: DDP, config: DDPConfig, path: str | Path) -> Path:
    """Write ``path`` (.safetensors) and ``path`` with suffix .json; returns the weights path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
    }
    save_file(state, str(path), metadata={CONFIG_KEY: config.to_json()})
    path.with_suffix(".json").write_text(config.to_json() + "\n")
    return path


def read_config(path: str | Path) -> DDPConfig:
    """The config stored inside a checkpoint."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if CONFIG_KEY not in metadata:
        raise ValueError(f"{path} is not a DDP checkpoint: no {CONFIG_KEY!r} in its metadata")
    return DDPConfig.from_json(metadata[CONFIG_KEY])


def load_checkpoint(
    path: str | Path, *, device: torch.device | str = "cpu"
) -> tuple[DDP, DDPConfig]:
    """Rebuild the network from the checkpoint's own config and load its weights (strict).

    A pretrained backbone is not re-read from its package: the checkpoint holds every weight.
    """
    config = read_config(path)
    model = build_ddp(config, device=device, load_pretrained=False)
    model.load_state_dict(load_file(str(path), device=str(device)))
    return model, config


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
