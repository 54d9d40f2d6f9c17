"""An export directory: one model file and ``export.json`` saying what it holds and which
network it came from; the key naming a network's exports; the cache the runtimes start from.

Layout (``ddp export --out DIR`` and every cache entry)::

    DIR/export.json            ExportManifest
    DIR/ddp.onnx               format onnx (weights inside)
    DIR/ddp.xml, DIR/ddp.bin   format openvino
    DIR/ddp_int8.onnx          format onnx-int8 (convolutions in int8)

The cache is ``<cache>/exports/<config name>_<key[:16]>/<format>/`` (``<cache>``:
``$DDP_CACHE_DIR`` or ``.cache/``); the key covers the config, every weight and the code that
builds the graph, so a changed network or exporter never reuses an old export. It keeps the
exports of the ``CACHED_NETWORKS`` networks used last (a network's folder is touched on every
use); writing a new export removes the older ones, which no key names any more once the
weights or the exporter changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.config import DDPConfig
from model.data.cache import cache_dir
from model.export.formats import EXPORT_FORMATS, ExportFormat
from model.export.graph import INPUT_NAMES, OUTPUT_NAMES
from model.network.ddp import DDP

MANIFEST_NAME = "export.json"
MODEL_FILES: dict[ExportFormat, str] = {
    "onnx": "ddp.onnx",
    "openvino": "ddp.xml",
    "onnx-int8": "ddp_int8.onnx",
}
CONVERTED_FROM_ONNX: tuple[ExportFormat, ...] = ("openvino", "onnx-int8")
"""The formats made from the ONNX export."""
_GRAPH_CODE = (Path(__file__).parent.parent / "network", Path(__file__).parent)
"""The sources the exported graph is made from: the network and this package."""


@dataclass(frozen=True)
class ExportManifest:
    """``export.json``: what an export directory holds."""

    format: ExportFormat
    model_file: str
    """The model's file name inside the directory."""
    network_key: str
    """:func:`network_key` of the exported network."""
    config: dict[str, Any]
    """``DDPConfig.to_dict()``: preprocessing and post-processing read it; the detection
    settings are baked into the graph."""
    input_names: list[str]
    output_names: list[str]
    torch_version: str

    def write(self, directory: Path) -> None:
        text = json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)
        (directory / MANIFEST_NAME).write_text(text + "\n")

    @classmethod
    def read(cls, directory: Path) -> ExportManifest:
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{directory} is not a DDP export: no {MANIFEST_NAME}")
        return cls(**json.loads(path.read_text()))


def network_key(model: DDP, config: DDPConfig) -> str:
    """SHA-256 (hex) of the config, every weight (name, dtype, shape, bytes), the torch version
    and the sources of ``model.network`` and ``model.export``."""
    digest = hashlib.sha256(config.to_json().encode())
    digest.update(torch.__version__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    for folder in _GRAPH_CODE:
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def write_export(
    model: DDP,
    config: DDPConfig,
    export_format: ExportFormat,
    out_dir: Path,
    *,
    from_onnx: Path | None = None,
    calibration: Sequence[np.ndarray] | None = None,
) -> ExportManifest:
    """Export ``model`` (of ``config``) into ``out_dir`` (created) and return its manifest.

    ``from_onnx``: for ``openvino`` and ``onnx-int8``, an ONNX export of the same network to
    convert instead of exporting it again. ``calibration``: for ``onnx-int8``, the (H, W, 3)
    uint8 RGB images its activation ranges come from (default:
    ``quantize.calibration_images`` of ``quantize.default_calibration_dir``).
    """
    from model.export.onnx_file import export_onnx
    from model.export.openvino_file import convert_onnx_to_openvino
    from model.export.quantize import calibration_images, default_calibration_dir, quantize_onnx

    def convert(onnx_path: Path) -> None:
        if export_format == "openvino":
            convert_onnx_to_openvino(onnx_path, model_path)
            return
        if calibration is None:
            quantize_onnx(
                onnx_path, model_path, calibration_images(default_calibration_dir()), config.input
            )
        else:
            quantize_onnx(onnx_path, model_path, calibration, config.input)

    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {EXPORT_FORMATS}, got {export_format!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILES[export_format]
    if export_format == "onnx":
        export_onnx(model, config, model_path)
    elif from_onnx is not None:
        convert(from_onnx)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            onnx_path = Path(scratch) / MODEL_FILES["onnx"]
            export_onnx(model, config, onnx_path)
            convert(onnx_path)
    manifest = ExportManifest(
        format=export_format,
        model_file=model_path.name,
        network_key=network_key(model, config),
        config=config.to_dict(),
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        torch_version=torch.__version__,
    )
    manifest.write(out_dir)
    return manifest


CACHED_NETWORKS = 4
"""Networks whose exports the cache keeps (the ones used last); about 50 MB each for the
``default`` config with every format."""


def exports_root() -> Path:
    """Where exports are cached: ``<cache>/exports``."""
    return cache_dir() / "exports"


def export_directory(
    model: DDP, config: DDPConfig, export_format: ExportFormat, *, root: Path | None = None
) -> Path:
    """Where the cache under ``root`` (default :func:`exports_root`) keeps this network's
    export in ``export_format``; it holds one when it has an ``export.json``."""
    root = exports_root() if root is None else root
    return root / f"{config.name}_{network_key(model, config)[:16]}" / export_format


def cached_export(
    model: DDP, config: DDPConfig, export_format: ExportFormat, *, root: Path | None = None
) -> Path:
    """The export directory of this network in ``export_format`` under ``root`` (default
    :func:`exports_root`), exported on first use (the OpenVINO and int8 exports convert the
    cached ONNX one). A directory appears only once complete, so an interrupted export is redone."""
    root = exports_root() if root is None else root
    directory = export_directory(model, config, export_format, root=root)
    if (directory / MANIFEST_NAME).is_file():
        os.utime(directory.parent)  # used now: the last to be pruned
        return directory
    from_onnx = None
    if export_format in CONVERTED_FROM_ONNX:
        from_onnx = cached_export(model, config, "onnx", root=root) / MODEL_FILES["onnx"]
    partial = directory.with_name(f"{export_format}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    write_export(model, config, export_format, partial, from_onnx=from_onnx)
    try:
        partial.rename(directory)
    except OSError:  # another process finished the same export first
        shutil.rmtree(partial, ignore_errors=True)
    os.utime(directory.parent)
    prune_exports(root)
    return directory


def prune_exports(root: Path, keep: int = CACHED_NETWORKS) -> list[Path]:
    """Remove from the cache under ``root`` the network folders of all but the ``keep`` used
    last (folder modification times); returns the removed folders."""
    folders = sorted(
        (path for path in root.iterdir() if path.is_dir()),
        key=lambda path: path.stat().st_mtime_ns,
        reverse=True,
    )
    for folder in folders[keep:]:
        shutil.rmtree(folder, ignore_errors=True)
    return folders[keep:]
