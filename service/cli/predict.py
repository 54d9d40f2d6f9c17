"""``ddp predict``: dense pose of image files -> IUV PNG, instance PNG, overlay PNG, NPZ, JSON.

Every input is checked before the network loads: it must be readable and a JPEG, PNG, WebP or
BMP that decodes completely (``model.inference.images``, the service's rule: a truncated JPEG
is refused). Each bad file is reported on stderr and skipped; the others are processed, and
the command exits with 1 if any input failed.

**Naming.** Outputs mirror the inputs' paths below the deepest folder holding them all, with
the extension replaced: ``photos/a.jpg`` alone gives ``OUT/a.iuv.png``, while ``d1/a.jpg`` and
``d2/a.jpg`` give ``OUT/d1/a.*`` and ``OUT/d2/a.*``. Two inputs of one folder that differ only
in their extension (``a.jpg``, ``a.png``) keep it (``OUT/a.jpg.*``, ``OUT/a.png.*``). A file
given twice is processed once. So no two inputs ever write the same file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from model.inference.images import ImageError, read_image_rgb
from model.outputs.encoding import encode_iuv_png, frame_arrays, paste_owners
from model.outputs.npz import frame_npz_bytes
from model.outputs.visualize import draw_overlay, write_png
from model.structures import DensePoseResult
from service.cli import PREDICT_OUTPUTS
from service.cli.network import load_predictor

INPUT_FAILED = 1
"""Exit status when at least one input could not be read."""


def output_names(inputs: Sequence[Path]) -> list[Path]:
    """Each input's outputs' path without suffix, relative to ``--out`` (the module's naming
    rule); ``inputs`` must be distinct files."""
    absolute = [Path(os.path.abspath(path)) for path in inputs]
    root = Path(os.path.commonpath([path.parent for path in absolute]))
    names = [path.parent.relative_to(root) / path.stem for path in absolute]
    shared = Counter(names)
    return [
        name.with_name(path.name) if shared[name] > 1 else name
        for name, path in zip(names, absolute, strict=True)
    ]


def write_prediction(
    image_rgb: np.ndarray,
    result: DensePoseResult,
    out_dir: Path,
    name: str,
    *,
    source: Path,
    formats: Collection[str] = tuple(PREDICT_OUTPUTS),
) -> dict[str, object]:
    """Write ``name`` + each of ``formats``' suffixes into ``out_dir``; return the JSON summary.

    The IUV PNG is the merged map of ``paste_owners`` (``encode_iuv_png``: blue = I). The
    instance PNG is (H, W) uint8: 0 = background, i + 1 = person i of ``result`` (persons past
    255 are not drawn), each pixel owned by the best-scoring mask covering it; the NPZ's
    ``instances`` map (uint16) holds all of them.
    """
    files = {kind: f"{name}{suffix}" for kind, suffix in PREDICT_OUTPUTS.items() if kind in formats}
    arrays = frame_arrays(result)
    if "iuv" in files:
        _, parts, uv = paste_owners(result)
        (out_dir / files["iuv"]).write_bytes(encode_iuv_png(parts, uv))
    if "instances" in files:
        instances = np.where(arrays.instances <= 255, arrays.instances, 0).astype(np.uint8)
        cv2.imwrite(str(out_dir / files["instances"]), instances)
    if "overlay" in files:
        write_png(out_dir / files["overlay"], draw_overlay(image_rgb, result))
    if "npz" in files:
        (out_dir / files["npz"]).write_bytes(frame_npz_bytes(arrays))
    summary: dict[str, object] = {
        "input": str(source),
        "image_size": {"height": image_rgb.shape[0], "width": image_rgb.shape[1]},
        "persons": [
            {"score": round(float(score), 4), "box_xyxy": [round(float(c), 2) for c in box]}
            for score, box in zip(result.scores, result.boxes_xyxy, strict=True)
        ],
        "files": files,
    }
    if "json" in files:
        (out_dir / files["json"]).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def readable_inputs(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """The inputs that decode completely, and those that do not (each reported on stderr)."""
    good: list[Path] = []
    bad: list[Path] = []
    for path in paths:
        try:
            read_image_rgb(path)
        except ImageError as error:
            _report(path, error)
            bad.append(path)
        else:
            good.append(path)
    return good, bad


def _report(path: Path, error: ImageError) -> None:
    tqdm.write(f"ddp: error: {path}: {error}", file=sys.stderr)


def run_predict(args: argparse.Namespace) -> int:
    inputs = list({os.path.abspath(path): Path(path) for path in args.images}.values())
    names = dict(zip(inputs, output_names(inputs), strict=True))
    good, bad = readable_inputs(inputs)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"error: --out {out_dir}: {error.strerror or error}") from None
    if not good:
        return _failed(bad, len(inputs))
    predictor = load_predictor(args)
    for path in tqdm(good, desc="predict", unit="image", file=sys.stderr):
        try:
            image = read_image_rgb(path)
        except ImageError as error:  # changed since it was checked
            _report(path, error)
            bad.append(path)
            continue
        result = predictor([image])[0].best(score_threshold=args.score_threshold)
        target = out_dir / names[path].parent
        target.mkdir(parents=True, exist_ok=True)
        write_prediction(image, result, target, names[path].name, source=path, formats=args.formats)
        tqdm.write(f"{path}: {len(result)} person(s) -> {target}", file=sys.stderr)
    return _failed(bad, len(inputs)) if bad else 0


def _failed(bad: Sequence[Path], total: int) -> int:
    print(
        f"ddp: {len(bad)} of {total} input(s) failed: {', '.join(map(str, bad))}", file=sys.stderr
    )
    return INPUT_FAILED
