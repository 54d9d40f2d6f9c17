"""``ddp video``: dense pose of a clip, temporally smoothed -> NPZ + two H.264 MP4s."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from model.video import VideoError, VideoOptions, probe, process_video
from service.cli.network import load_predictor


def run_video(args: argparse.Namespace) -> int:
    given: dict[str, Any] = {"radius": args.radius, "batch_size": args.batch_size}
    try:
        options = VideoOptions(
            smooth=not args.no_smooth,
            flow=args.flow,
            raft_weights=Path(args.raft_weights) if args.raft_weights else None,
            score_threshold=args.score_threshold,
            **{name: value for name, value in given.items() if value is not None},
        )
        probe(args.clip)  # not a video (a still image, say): refused before the model loads
    except ValueError as error:  # VideoError is one
        raise SystemExit(f"error: {error}") from None
    predictor = load_predictor(args)
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
