"""The ``ddp`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from model.config import CONFIGS, get_config
from model.encoding import encode_iuv_png, paste_parts_uv
from model.predictor import Predictor
from model.structures import DensePoseResult
from model.visualize import draw_overlay, write_png

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "ddp_default.safetensors"


def read_image_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; EXIF orientation applied (OpenCV's default)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def instance_label_map(result: DensePoseResult) -> np.ndarray:
    """(H, W) uint8: 0 = background, i + 1 = person i (higher scores drawn last, so on top)."""
    labels = np.zeros(result.masks.shape[-2:], dtype=np.uint8)
    for i in reversed(range(min(len(result), 255))):
        labels[result.masks[i].numpy()] = i + 1
    return labels


def write_prediction(
    image_rgb: np.ndarray, result: DensePoseResult, out_dir: Path, stem: str
) -> dict[str, object]:
    """Write <stem>.iuv.png, .instances.png, .overlay.png and .json; return the JSON summary."""
    parts, u, v = paste_parts_uv(result)
    files = {
        "iuv_png": f"{stem}.iuv.png",
        "instances_png": f"{stem}.instances.png",
        "overlay_png": f"{stem}.overlay.png",
    }
    iuv = encode_iuv_png(parts, torch.stack([u, v]))
    (out_dir / files["iuv_png"]).write_bytes(iuv)
    cv2.imwrite(str(out_dir / files["instances_png"]), instance_label_map(result))
    write_png(out_dir / files["overlay_png"], draw_overlay(image_rgb, result))
    summary: dict[str, object] = {
        "image_size": {"height": image_rgb.shape[0], "width": image_rgb.shape[1]},
        "persons": [
            {"score": round(float(score), 4), "box_xyxy": [round(float(c), 2) for c in box]}
            for score, box in zip(result.scores, result.boxes_xyxy, strict=True)
        ],
        "files": files,
    }
    (out_dir / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _predictor(args: argparse.Namespace) -> Predictor:
    if args.untrained:
        print(
            f"WARNING: randomly initialised {args.untrained!r} network: output is meaningless "
            "(plumbing check only).",
            file=sys.stderr,
        )
        return Predictor.untrained(get_config(args.untrained), device=args.device)
    weights = Path(args.weights)
    if not weights.is_file():
        raise SystemExit(
            f"error: no weights at {weights}. Pass --weights PATH, or --untrained CONFIG "
            f"({', '.join(CONFIGS)}) to check the pipeline with a random network."
        )
    return Predictor.from_checkpoint(weights, device=args.device, precision=args.precision)


def predict(args: argparse.Namespace) -> int:
    predictor = _predictor(args)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in tqdm(args.images, desc="predict", unit="image", file=sys.stderr):
        image = read_image_rgb(Path(path))
        result = predictor([image])[0]
        keep = result.scores >= args.score_threshold
        result = _subset(result, keep)
        write_prediction(image, result, out_dir, Path(path).stem)
        tqdm.write(f"{path}: {len(result)} person(s) -> {out_dir}", file=sys.stderr)
    return 0


def _subset(result: DensePoseResult, keep: np.ndarray) -> DensePoseResult:
    indices = [i for i, k in enumerate(keep.tolist()) if k]
    return DensePoseResult(
        boxes_xyxy=result.boxes_xyxy[indices],
        scores=result.scores[indices],
        masks=result.masks[indices],
        parts=[result.parts[i] for i in indices],
        uv=[result.uv[i] for i in indices],
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddp", description="Direct Dense Pose")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("predict", help="dense pose of images -> IUV PNG, masks, JSON, overlay")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="checkpoint (.safetensors)")
    p.add_argument(
        "--untrained",
        metavar="CONFIG",
        choices=sorted(CONFIGS),
        help="use a random network of this config instead of weights (plumbing check)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "fp16", "bf16"],
        help="autocast precision on CUDA (the CPU always runs fp32)",
    )
    p.add_argument("--score-threshold", type=float, default=0.3, help="drop persons below this")
    p.set_defaults(handler=predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
