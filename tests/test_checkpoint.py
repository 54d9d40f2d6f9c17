import json

import pytest
import torch

from model.checkpoint import load_checkpoint, read_config, save_checkpoint
from model.config import default_config, tiny_config
from model.network.ddp import build_ddp


def test_round_trip_restores_config_and_every_tensor(tmp_path):
    config = tiny_config()
    model = build_ddp(config)
    path = save_checkpoint(model, config, tmp_path / "tiny.safetensors")
    assert json.loads(path.with_suffix(".json").read_text())["name"] == "tiny"
    loaded, loaded_config = load_checkpoint(path)
    assert loaded_config == config
    original = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, original[name]), name


def test_pretrained_backbone_checkpoint_loads_without_the_package_weights(tmp_path):
    config = default_config()
    model = build_ddp(config)
    path = save_checkpoint(model, config, tmp_path / "default.safetensors")
    loaded, _ = load_checkpoint(path)
    stem = "backbone.body.model.conv_stem.weight"
    assert torch.equal(loaded.state_dict()[stem], model.state_dict()[stem])


def test_a_file_without_config_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="not a DDP checkpoint"):
        read_config(path)
