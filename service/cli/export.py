"""``ddp export``: the network as one ONNX or OpenVINO IR graph in a directory
(``model.export.bundle``; what the graph holds: docs/export.md). The export comes from the
export cache the runtimes use (``<cache>/exports``), made there first if it is not."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from model.export.bundle import ExportManifest, cached_export
from service.cli.network import load_predictor, network_name


def run_export(args: argparse.Namespace) -> int:
    predictor = load_predictor(args)
    out_dir = Path(args.out)
    print(f"exporting {network_name(args)} to {args.format} ...", file=sys.stderr)
    start = time.monotonic()
    try:
        cached = cached_export(predictor.model, predictor.config, args.format)
    except ImportError as error:
        raise SystemExit(
            f"error: ddp export needs the export extra (pip install -e '.[export]'): {error}"
        ) from None
    except ValueError as error:  # a config without an exportable form (mask_nms 'hard')
        raise SystemExit(f"error: {error}") from None
    shutil.copytree(cached, out_dir, dirs_exist_ok=True)
    model_file = out_dir / ExportManifest.read(out_dir).model_file
    print(f"{model_file} ({time.monotonic() - start:.0f} s)", file=sys.stderr)
    return 0
