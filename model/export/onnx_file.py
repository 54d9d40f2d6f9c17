"""``ExportGraph`` -> an ONNX file through ``torch.onnx.export(..., dynamo=True)``
(``torch.export`` traces the graph, onnxscript translates it).

Every size is dynamic: the batch B, the padded input H x W (multiples of the config's
``size_divisibility``), the N persons and the M active sites. The weights are stored inside
the file (16 MiB for the default config). Needs the ``export`` extra (onnx, onnxscript).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import Tensor
from torch.export import Dim

from model.config import DDPConfig
from model.export.graph import INPUT_NAMES, OUTPUT_NAMES, ExportGraph
from model.network.ddp import DDP

ONNX_OPSET = 18
"""NonMaxSuppression, ScatterND with ``reduction="add"`` (16), Resize on dynamic sizes."""
MAX_BATCH = 64
MAX_SIDE_STEPS = 128
"""The padded input is at most 128 x ``size_divisibility`` (4096 px) on a side."""


def example_inputs(config: DDPConfig) -> tuple[Tensor, Tensor]:
    """The inputs traced: 2 images (a batch of 1 would fix B at 1) of the config's
    padded input size; their values do not matter (export traces shapes)."""
    divisor = config.input.size_divisibility
    height = -(-config.input.short_side // divisor) * divisor
    width = -(-config.input.max_side // divisor) * divisor
    images = torch.zeros(2, 3, height, width)
    image_sizes = torch.tensor([[height, width]] * 2, dtype=torch.int64)
    return images, image_sizes


def export_onnx(model: DDP, config: DDPConfig, path: Path) -> None:
    """Write ``model`` (whose config is ``config``) as one ONNX graph at ``path``.

    The export runs on a CPU copy of the network (the graph is device-independent). The
    smallest padded input side it accepts is 2 x ``size_divisibility`` (64 px): a side of one
    step would be traced as a special case.
    """
    graph = ExportGraph(copy.deepcopy(model).cpu()).eval()
    steps = {name: Dim(name, min=2, max=MAX_SIDE_STEPS) for name in ("height_steps", "width_steps")}
    divisor = config.input.size_divisibility
    batch = Dim("batch", min=1, max=MAX_BATCH)
    dynamic_shapes = {
        "images": {0: batch, 2: divisor * steps["height_steps"], 3: divisor * steps["width_steps"]},
        "image_sizes": {0: batch},
    }
    with torch.no_grad():
        program = torch.onnx.export(
            graph,
            example_inputs(config),
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=dynamic_shapes,
            opset_version=ONNX_OPSET,
        )
    assert program is not None  # the dynamo exporter always returns its program
    program.save(path, external_data=False)
