"""Seconds per image of several weight files of one config, interleaved image by image.

Each image runs through every network in a rotating order, so other work on the machine
slows all of them alike. Prints a markdown table: median and mean seconds per image and the
persons returned per image (at each network's own threshold).

    python -m benchmarks.weights_side_by_side --data DIR --images 40 \\
        old=/tmp/old.safetensors new=weights/ddp_default.safetensors
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from model.inference.images import read_image_rgb
from model.inference.predictor import Predictor


def _named(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", type=_named, help="NAME=PATH of a checkpoint")
    parser.add_argument("--data", type=Path, required=True, help="a directory with images/")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3, help="untimed images first")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    predictors = [(n, Predictor.from_checkpoint(p, device="cpu")) for n, p in args.weights]
    paths = sorted((args.data / "images").iterdir())[: args.warmup + args.images]
    seconds: dict[str, list[float]] = {n: [] for n, _ in predictors}
    persons = dict.fromkeys(seconds, 0)
    for i, path in enumerate(paths):
        image = read_image_rgb(path)
        shift = i % len(predictors)
        for name, predictor in predictors[shift:] + predictors[:shift]:
            start = time.perf_counter()
            found = len(predictor([image])[0].best())
            if i >= args.warmup:
                seconds[name].append(time.perf_counter() - start)
                persons[name] += found
    print("| weights | median s / image | mean s / image | persons / image |")
    print("|---|---:|---:|---:|")
    for name, values in seconds.items():
        print(
            f"| {name} | {statistics.median(values):.3f} | {statistics.mean(values):.3f} "
            f"| {persons[name] / len(values):.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
