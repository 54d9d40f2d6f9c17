"""The ``ddp`` command line: one module per command group, loaded only for the command run.

| module | commands |
|---|---|
| ``predict`` | ``ddp predict``: images -> IUV PNG, instance PNG, overlay, NPZ, JSON |
| ``video`` | ``ddp video``: a clip -> smoothed NPZ + two H.264 MP4s |
| ``evaluate`` | ``ddp eval``: GPS AP/AR and mask AP on a DensePose-COCO directory |
| ``training`` | ``ddp train`` and ``ddp recipe`` |
| ``data`` | ``ddp synth``: render a synthetic data set |
| ``serve`` | ``ddp serve``: the HTTP service |
| ``worker`` | ``ddp worker``: runs the service's video jobs from the queue (docs/jobs.md) |
| ``export`` | ``ddp export``: the network as ONNX or OpenVINO IR (docs/export.md) |
| ``network`` | the options naming a network, and the predictor they load |

The CLI sits above ``model`` and ``service``: nothing in either imports it. Building the parser
imports nothing heavy (no torch, numpy or OpenCV: ``ddp --help`` answers at once); a command's
module loads them when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, get_args

from model.config import ABLATIONS, CONFIGS
from model.export.formats import EXPORT_FORMATS
from model.paths import DEFAULT_WEIGHTS
from model.runtimes.names import RUNTIME_NAMES
from model.training.settings import DataEngine, DataSettings, TrainSettings

COMMAND_MODULES = {
    "predict": "predict",
    "video": "video",
    "eval": "evaluate",
    "train": "training",
    "recipe": "training",
    "synth": "data",
    "serve": "serve",
    "worker": "worker",
    "export": "export",
}
"""Command -> the module of this package whose ``run_<command>`` carries it out."""


def default_of(cls: type[Any], name: str) -> Any:
    """The default of dataclass field ``name``: the CLI shows, never restates, defaults."""
    for field in fields(cls):
        if field.name == name:
            return field.default
    raise KeyError(f"{cls.__name__} has no field {name!r}")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help with each option's default, unless it has none (None, False) or the help text
    already says what it is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False) or "default" in text:
            return text
        return super()._get_help_string(action)


def _version() -> str:
    try:
        return importlib.metadata.version("ddp-densepose")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


PREDICT_OUTPUTS = {
    "iuv": ".iuv.png",
    "instances": ".instances.png",
    "overlay": ".overlay.png",
    "npz": ".npz",
    "json": ".json",
}
"""The files ``ddp predict`` can write (``--formats``, all by default) -> their suffix."""


def _formats(text: str) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in chosen if name not in PREDICT_OUTPUTS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(PREDICT_OUTPUTS)}, got {text!r}"
        )
    return chosen


def _person_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        bounds = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A-B (e.g. 1-6), got {text!r}") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"need 0 <= A <= B, got {text!r}")
    return bounds


def _height_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        bounds = float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI (e.g. 0.2-2), got {text!r}") from None
    if not 0 < bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"need 0 < LO <= HI, got {text!r}")
    return bounds


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
    _add_runtime_argument(parser)
    parser.add_argument(
        "--score-threshold",
        type=float,
        help="drop persons below this (default: the network's detection_score_threshold)",
    )


def _add_runtime_argument(parser: argparse.ArgumentParser, default: str | None = "torch") -> None:
    """``--runtime``; ``default`` None: the service's ``DDP_RUNTIME``."""
    parser.add_argument(
        "--runtime",
        default=default,
        choices=RUNTIME_NAMES,
        help="what runs the network: eager PyTorch, or its export (made on first use, cached) "
        "in ONNX Runtime or OpenVINO" + ("" if default else " (default: DDP_RUNTIME or torch)"),
    )


def _add_service_network_arguments(parser: argparse.ArgumentParser) -> None:
    """The network of ``ddp serve`` and ``ddp worker``: options over the ``DDP_*`` settings."""
    parser.add_argument(
        "--weights", help="checkpoint (.safetensors); default: DDP_WEIGHTS or weights/"
    )
    parser.add_argument(
        "--untrained",
        metavar="CONFIG",
        choices=sorted(CONFIGS),
        help="when the weights are missing, serve a random network of this config (demo only)",
    )
    parser.add_argument("--device", help="auto, cpu or cuda[:N] (default: DDP_DEVICE or auto)")
    _add_runtime_argument(parser, default=None)


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Network, schedule and device options shared by ``train`` and ``recipe``."""

    def default(name: str) -> Any:
        return default_of(TrainSettings, name)

    parser.add_argument("--config", default="default", choices=sorted(CONFIGS), help="network")
    parser.add_argument(
        "--ablation", default="full", choices=ABLATIONS, help="train a Table 2 variant"
    )
    parser.add_argument(
        "--frozen-stages",
        type=int,
        help="pretrained body stages left as ImageNet made them, 0-4 (default: the config's)",
    )
    parser.add_argument("--out", required=True, help="checkpoints, log.jsonl, eval.json go here")
    parser.add_argument(
        "--steps", type=int, default=default("steps"), help="length of the LR schedule"
    )
    parser.add_argument("--batch-size", type=int, default=default("batch_size"))
    parser.add_argument("--lr", type=float, default=default("lr"), help="base learning rate")
    parser.add_argument(
        "--warmup", type=int, default=default("warmup_steps"), help="linear warm-up steps"
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=default("checkpoint_every"),
        help="steps per checkpoint",
    )
    parser.add_argument(
        "--clip-grad-norm", type=float, default=default("clip_grad_norm"), help="0: no clipping"
    )
    parser.add_argument("--workers", type=int, default=default("workers"), help="data processes")
    parser.add_argument(
        "--init-weights", help="start from this checkpoint of the same network (not ImageNet)"
    )
    parser.add_argument(
        "--seed", type=int, default=default("seed"), help="initialisation and data order"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddp", description="Direct Dense Pose", formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, formatter_class=_HelpFormatter)

    p = command("predict", "dense pose of images -> IUV PNG, instance PNG, overlay, NPZ, JSON")
    p.add_argument(
        "images",
        nargs="+",
        help="image files (JPEG, PNG, WebP, BMP); outputs mirror their folders below the "
        "deepest one holding them all",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--formats",
        type=_formats,
        default=tuple(PREDICT_OUTPUTS),
        metavar="LIST",
        help=f"files to write per image, comma-separated from {','.join(PREDICT_OUTPUTS)} "
        "(default: all)",
    )
    _add_network_arguments(p)

    v = command("video", "dense pose of a video, temporally smoothed -> NPZ + two H.264 MP4s")
    v.add_argument("clip", help="video file (MP4, MOV, WebM/MKV or AVI; a still image is refused)")
    v.add_argument("--out", required=True, help="output directory")
    _add_network_arguments(v)
    v.add_argument("--no-smooth", action="store_true", help="no temporal smoothing")
    v.add_argument("--flow", default="dis", choices=["dis", "raft"], help="optical flow")
    v.add_argument("--raft-weights", help="RAFT state dict (.pth or .safetensors), --flow raft")
    v.add_argument("--radius", type=int, help="smoothing window radius r, frames (VideoOptions)")
    v.add_argument("--batch-size", type=int, help="frames per forward pass (VideoOptions)")

    e = command("eval", "GPS AP/AR and mask AP on a DensePose-COCO directory")
    e.add_argument("--data", required=True, help="directory with annotations.json (ddp synth)")
    _add_network_arguments(e)
    e.add_argument("--json", help="write the metrics here")
    e.add_argument("--limit", type=int, help="evaluate the first N images only")
    e.add_argument(
        "--kappa",
        type=float,
        help="one GPS normaliser in metres (0.255: the DensePose paper's); default: per part",
    )

    s = command("serve", "run the HTTP service (settings also from DDP_* env)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=int, default=8000)
    _add_service_network_arguments(s)

    w = command("worker", "run the service's video jobs from its queue (settings: DDP_* env)")
    _add_service_network_arguments(w)

    x = command("export", "the network as one ONNX or OpenVINO graph, backbone to IUV logits")
    x.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="file format")
    x.add_argument("--out", required=True, help="output directory (model file + export.json)")
    x.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="checkpoint (.safetensors)")
    x.add_argument(
        "--untrained",
        metavar="CONFIG",
        choices=sorted(CONFIGS),
        help="export a random network of this config instead of weights (plumbing check)",
    )
    x.set_defaults(device="cpu", precision="fp32", runtime="torch")  # the eager fp32 network

    d = command("synth", "render a synthetic DensePose-COCO data set")
    d.add_argument("--out", required=True, help="output directory")
    d.add_argument("--images", type=int, default=0, help="still images")
    d.add_argument("--clips", type=int, default=0, help="video clips")
    d.add_argument("--frames", type=int, default=16, help="frames per clip")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--persons", type=_person_range, default=(1, 6), help="people per image, A-B")
    d.add_argument("--height", type=int, default=default_of(DataSettings, "height"))
    d.add_argument("--width", type=int, default=default_of(DataSettings, "width"))
    d.add_argument("--workers", type=int, default=2, help="processes (one torch thread each)")
    d.add_argument(
        "--photos", help="directory of person-free photos: backgrounds, textures, hard negatives"
    )
    d.add_argument(
        "--plain", action="store_true", help="the original engine (no photos, effects, negatives)"
    )

    t = command("train", "train a network on a DensePose-COCO directory")
    t.add_argument("--data", required=True, help="directory with annotations.json (ddp synth)")
    t.add_argument("--val", help="held-out directory scored at the end (-> OUT/eval.json)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    _add_training_arguments(t)

    r = command("recipe", "render data (cached), train, score the held-out set, export weights")
    _add_training_arguments(r)
    r.add_argument(
        "--train-images",
        type=int,
        default=default_of(DataSettings, "train_images"),
        help="synthetic training images",
    )
    r.add_argument(
        "--val-images",
        type=int,
        default=default_of(DataSettings, "val_images"),
        help="held-out images",
    )
    r.add_argument(
        "--data-seed",
        type=int,
        default=default_of(DataSettings, "seed"),
        help="training seed; the held-out set uses this + 1, the validation set + 2",
    )
    r.add_argument(
        "--engine",
        default=default_of(DataSettings, "engine"),
        choices=get_args(DataEngine),
        help="plain: the original synthetic engine; world: real backgrounds, occluders, "
        "camera effects, person-free images",
    )
    r.add_argument(
        "--calibration-images",
        type=int,
        default=default_of(DataSettings, "calibration_images"),
        help="validation images choosing the detection threshold and mask NMS (0: keep)",
    )
    r.add_argument(
        "--background-photos",
        type=int,
        default=default_of(DataSettings, "background_photos"),
        help="world engine: the first N photos of the training pool (default: the shipped "
        "recipe's)",
    )
    r.add_argument(
        "--persons",
        type=_person_range,
        help="people per training and validation image, A-B (default: the data engine's)",
    )
    r.add_argument(
        "--person-heights",
        type=_height_range,
        help="standing height of a person over the image height, LO-HI, log-uniform, in the "
        "training and validation images (default: the data engine's)",
    )
    r.add_argument("--data-root", help="where rendered sets are cached (None: .cache/datasets)")
    r.add_argument("--export", help="copy the final weights here (+ .json config)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"{__name__}.{COMMAND_MODULES[args.command]}")
    return int(getattr(module, f"run_{args.command}")(args))
