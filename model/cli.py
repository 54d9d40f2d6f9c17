"""The ``ddp`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from tqdm import tqdm

from model.config import ABLATIONS, CONFIGS, DDPConfig, ablate, get_config
from model.encoding import encode_iuv_png, paste_parts_uv
from model.predictor import Predictor
from model.structures import DensePoseResult
from model.visualize import draw_overlay, write_png

if TYPE_CHECKING:
    from model.train.loop import TrainSettings

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


def video(args: argparse.Namespace) -> int:
    from model.video import VideoError, VideoOptions, process_video

    try:
        options = VideoOptions(
            smooth=not args.no_smooth,
            flow=args.flow,
            radius=args.radius,
            batch_size=args.batch_size,
            raft_weights=Path(args.raft_weights) if args.raft_weights else None,
            score_threshold=args.score_threshold,
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    predictor = _predictor(args)
    with tqdm(desc="video", unit="frame", file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            out = process_video(
                Path(args.clip), Path(args.out), predictor, options, progress=progress
            )
        except VideoError as error:
            raise SystemExit(f"error: {error}") from None
    print(
        f"{args.clip}: {out.frames} frames, {out.width}x{out.height} at {out.fps:g} fps -> "
        f"{out.npz}, {out.parts_mp4}, {out.viridis_mp4}"
    )
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in out.seconds.items()))
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
    from model.evaluation.evaluator import format_summary
    from model.evaluation.report import evaluate_directory

    try:
        report = evaluate_directory(_predictor(args), args.data, kappa=args.kappa, limit=args.limit)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    report["network"] = f"untrained {args.untrained}" if args.untrained else str(args.weights)
    print(format_summary(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _train_settings(args: argparse.Namespace) -> TrainSettings:
    from model.train.loop import TrainSettings

    try:
        return TrainSettings(
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


def _training_config(args: argparse.Namespace) -> DDPConfig:
    return ablate(get_config(args.config), args.ablation)


def train(args: argparse.Namespace) -> int:
    from model.device import select_device
    from model.train.loop import train as run_training
    from model.train.recipe import evaluate_held_out

    device = select_device(args.device)
    path = run_training(
        _training_config(args),
        Path(args.data),
        Path(args.out),
        _train_settings(args),
        resume=args.resume,
        device=device,
    )
    print(f"checkpoint: {path}")
    if args.val:
        evaluate_held_out(path, Path(args.val), Path(args.out), device=device)
    return 0


def recipe(args: argparse.Namespace) -> int:
    from model.device import select_device
    from model.train.recipe import DataSettings, run_recipe

    data = DataSettings(
        train_images=args.train_images,
        val_images=args.val_images,
        seed=args.data_seed,
        workers=args.workers,
        data_root=Path(args.data_root) if args.data_root else None,
    )
    run_recipe(
        _training_config(args),
        Path(args.out),
        data,
        _train_settings(args),
        export=Path(args.export) if args.export else None,
        device=select_device(args.device),
    )
    return 0


def _add_training_arguments(parser: argparse.ArgumentParser, *, steps: int) -> None:
    """Network, schedule and device options shared by ``train`` and ``recipe``."""
    parser.add_argument("--config", default="default", choices=sorted(CONFIGS), help="network")
    parser.add_argument(
        "--ablation", default="full", choices=ABLATIONS, help="train a Table 2 variant"
    )
    parser.add_argument("--out", required=True, help="checkpoints, log.jsonl, eval.json go here")
    parser.add_argument("--steps", type=int, default=steps, help="length of the LR schedule")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.01, help="base learning rate (SGD)")
    parser.add_argument("--warmup", type=int, default=150, help="linear warm-up steps")
    parser.add_argument("--checkpoint-every", type=int, default=250, help="steps per checkpoint")
    parser.add_argument("--clip-grad-norm", type=float, default=10.0, help="0: no clipping")
    parser.add_argument("--workers", type=int, default=2, help="data processes")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")


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

    v = commands.add_parser(
        "video", help="dense pose of a video, temporally smoothed -> NPZ + two H.264 MP4s"
    )
    v.add_argument("clip", help="video file (MP4, MOV, MKV, AVI, ...)")
    v.add_argument("--out", required=True, help="output directory")
    _add_network_arguments(v)
    v.add_argument("--no-smooth", action="store_true", help="no temporal smoothing")
    v.add_argument("--flow", default="dis", choices=["dis", "raft"], help="optical flow")
    v.add_argument("--raft-weights", help="RAFT state dict (.pth or .safetensors), --flow raft")
    v.add_argument("--radius", type=int, default=2, help="smoothing window radius r, frames")
    v.add_argument("--batch-size", type=int, default=4, help="frames per forward pass")
    v.add_argument("--score-threshold", type=float, default=0.3, help="drop persons below this")
    v.set_defaults(handler=video)

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
    t.add_argument("--data", required=True, help="directory with annotations.json (ddp synth)")
    t.add_argument("--val", help="held-out directory scored at the end (-> OUT/eval.json)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    _add_training_arguments(t, steps=10000)
    t.set_defaults(handler=train)

    r = commands.add_parser(
        "recipe", help="render data (cached), train, score the held-out set, export weights"
    )
    _add_training_arguments(r, steps=2000)
    r.add_argument("--train-images", type=int, default=4000, help="synthetic training images")
    r.add_argument("--val-images", type=int, default=200, help="held-out images")
    r.add_argument("--data-seed", type=int, default=0, help="held-out set uses this + 1")
    r.add_argument("--data-root", help="where rendered sets are cached (default .cache/datasets)")
    r.add_argument("--export", help="copy the final weights here (+ .json config)")
    r.set_defaults(handler=recipe)

    b = commands.add_parser("bench", help="run a benchmark from a source checkout (benchmarks/)")
    b.add_argument("benchmark", choices=["persons"], help="persons: seconds vs persons per image")
    b.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's options (--help)")
    b.set_defaults(handler=bench)
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


def bench(args: argparse.Namespace) -> int:
    import importlib

    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "benchmarks").is_dir():
        raise SystemExit("error: ddp bench needs a source checkout (benchmarks/ is not installed)")
    if str(checkout) not in sys.path:  # benchmarks/ sits beside model/, outside the package
        sys.path.insert(0, str(checkout))
    importlib.import_module(f"benchmarks.{args.benchmark}").main(args.args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
