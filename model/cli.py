"""The ``ddp`` command line."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
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
        keep = torch.nonzero(result.scores >= args.score_threshold).flatten()
        result = result.select(keep.tolist())
        write_prediction(image, result, out_dir, Path(path).stem)
        tqdm.write(f"{path}: {len(result)} person(s) -> {out_dir}", file=sys.stderr)
    return 0


def _person_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        bounds = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A-B (e.g. 1-6), got {text!r}") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"need 0 <= A <= B, got {text!r}")
    return bounds


def synth(args: argparse.Namespace) -> int:
    from model.data.scene import SceneConfig
    from model.data.synth import SynthConfig, generate

    low, high = args.persons
    scene = SceneConfig(height=args.height, width=args.width, min_persons=low, max_persons=high)
    stats = generate(
        args.out,
        images=args.images,
        clips=args.clips,
        frames=args.frames,
        config=SynthConfig(scene=scene, seed=args.seed),
        workers=args.workers,
    )
    print(json.dumps(stats, indent=2))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from model.data.loader import DensePoseCocoDataset
    from model.evaluation.evaluator import DensePoseEvaluator, format_summary
    from model.evaluation.geodesic import load_body_geodesics

    annotations = Path(args.data) / "annotations.json"
    if not annotations.is_file():
        raise SystemExit(f"error: no {annotations} (write a set with `ddp synth --out DIR`)")
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"error: --limit must be >= 1, got {args.limit}")
    predictor = _predictor(args)
    dataset = DensePoseCocoDataset(annotations)
    evaluator = DensePoseEvaluator(dataset, load_body_geodesics(), kappa=args.kappa)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    start = time.monotonic()
    for index in tqdm(range(count), desc="eval", unit="image", file=sys.stderr):
        evaluator.add(index, predictor([dataset.image_rgb(index)])[0])
    seconds = time.monotonic() - start
    metrics = evaluator.summary()
    print(format_summary(metrics))
    if args.json:
        report = {
            "data": str(args.data),
            "network": f"untrained {args.untrained}" if args.untrained else str(args.weights),
            "images": count,
            "kappa": "per part" if args.kappa is None else args.kappa,
            "seconds": round(seconds, 2),
            **{k: None if math.isnan(v) else round(v, 3) for k, v in metrics.items()},
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def train(args: argparse.Namespace) -> int:
    from model.device import select_device
    from model.train.loop import TrainSettings
    from model.train.loop import train as run_training

    try:
        settings = TrainSettings(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=args.warmup,
            checkpoint_every=args.checkpoint_every,
            workers=args.workers,
            seed=args.seed,
            clip_grad_norm=args.clip_grad_norm or None,
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    path = run_training(
        get_config(args.config),
        Path(args.data),
        Path(args.out),
        settings,
        resume=args.resume,
        device=select_device(args.device),
    )
    print(f"checkpoint: {path}")
    return 0


def _add_network_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="checkpoint (.safetensors)")
    parser.add_argument(
        "--untrained",
        metavar="CONFIG",
        choices=sorted(CONFIGS),
        help="use a random network of this config instead of weights (plumbing check)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "fp16", "bf16"],
        help="autocast precision on CUDA (the CPU always runs fp32)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddp", description="Direct Dense Pose")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("predict", help="dense pose of images -> IUV PNG, masks, JSON, overlay")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--out", required=True, help="output directory")
    _add_network_arguments(p)
    p.add_argument("--score-threshold", type=float, default=0.3, help="drop persons below this")
    p.set_defaults(handler=predict)

    e = commands.add_parser("eval", help="GPS AP/AR and mask AP on a DensePose-COCO directory")
    e.add_argument("--data", required=True, help="directory with annotations.json (ddp synth)")
    _add_network_arguments(e)
    e.add_argument("--json", help="write the metrics here")
    e.add_argument("--limit", type=int, help="evaluate the first N images only")
    e.add_argument(
        "--kappa",
        type=float,
        help="one GPS normaliser in metres (0.255: the DensePose paper's); default: per part",
    )
    e.set_defaults(handler=evaluate)

    s = commands.add_parser("serve", help="run the HTTP service (settings also from DDP_* env)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--weights", help="checkpoint (.safetensors); default: DDP_WEIGHTS or weights/")
    s.add_argument(
        "--untrained",
        metavar="CONFIG",
        choices=sorted(CONFIGS),
        help="when the weights are missing, serve a random network of this config (demo only)",
    )
    s.add_argument("--device", help="auto, cpu or cuda[:N] (default: DDP_DEVICE or auto)")
    s.set_defaults(handler=serve)

    d = commands.add_parser("synth", help="render a synthetic DensePose-COCO data set")
    d.add_argument("--out", required=True, help="output directory")
    d.add_argument("--images", type=int, default=0, help="still images")
    d.add_argument("--clips", type=int, default=0, help="video clips")
    d.add_argument("--frames", type=int, default=16, help="frames per clip")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--persons", type=_person_range, default=(1, 6), help="people per image, A-B")
    d.add_argument("--height", type=int, default=384)
    d.add_argument("--width", type=int, default=512)
    d.add_argument("--workers", type=int, default=2, help="processes (one torch thread each)")
    d.set_defaults(handler=synth)

    t = commands.add_parser("train", help="train a network on a DensePose-COCO directory")
    t.add_argument("--config", default="default", choices=sorted(CONFIGS), help="network config")
    t.add_argument("--data", required=True, help="directory with annotations.json (ddp synth)")
    t.add_argument("--out", required=True, help="checkpoints and log.jsonl go here")
    t.add_argument("--steps", type=int, default=10000, help="length of the LR schedule")
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--lr", type=float, default=0.005, help="base learning rate (SGD)")
    t.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    t.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    t.add_argument("--clip-grad-norm", type=float, default=10.0, help="0: no clipping")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    t.add_argument("--workers", type=int, default=2, help="data loading processes")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    t.set_defaults(handler=train)
    return parser


def serve(args: argparse.Namespace) -> int:
    from service.server import serve as run_service  # the service's dependencies are an extra

    run_service(
        host=args.host,
        port=args.port,
        weights=args.weights,
        untrained_config=args.untrained,
        device=args.device,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
