"""The export's per-row sums (IAN's region statistics) in ONNX Runtime on two threads against
float64 numpy: ScatterND's reduction add races there (microsoft/onnxruntime#18048) and lost
sums in batches of the shipped network, 2 GPS AP on the held-out set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.export import Dim

from model.export.graph import segment_sum

onnxruntime = pytest.importorskip("onnxruntime")
ROWS = 4


class _SegmentSum(nn.Module):
    def forward(self, index: Tensor, values: Tensor) -> Tensor:
        return segment_sum(index, values, ROWS)


def _export(path: Path) -> None:
    pairs = Dim("pairs", min=2, max=1 << 20)
    index, values = torch.zeros(8, dtype=torch.int64), torch.zeros(8, 16)
    program = torch.onnx.export(
        _SegmentSum().eval(),
        (index, values),
        dynamo=True,
        dynamic_shapes={"index": {0: pairs}, "values": {0: pairs}},
    )
    assert program is not None
    program.save(path)


def test_segment_sums_are_exact_in_onnxruntime_on_two_threads(tmp_path: Path) -> None:
    _export(tmp_path / "sum.onnx")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    session = onnxruntime.InferenceSession(
        str(tmp_path / "sum.onnx"), options, providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    index = rng.integers(0, ROWS, 200_000)  # every row repeated ~50,000 times
    values = rng.integers(-4, 5, (200_000, 16)).astype(np.float32)  # integer sums: exact
    expected = np.zeros((ROWS, 16))
    np.add.at(expected, index, values.astype(np.float64))
    names = [i.name for i in session.get_inputs()]
    for _ in range(5):  # a race shows as a different answer from one run to the next
        [sums] = session.run(None, dict(zip(names, (index, values), strict=True)))
        np.testing.assert_array_equal(sums, expected)
