"""``ddp synth``: render a synthetic DensePose-COCO data set."""

from __future__ import annotations

import argparse
import json

from model.data.backgrounds import BackgroundPool
from model.data.scene import SceneConfig
from model.data.synth import SynthConfig, generate, legacy


def run_synth(args: argparse.Namespace) -> int:
    low, high = args.persons
    if args.plain and args.photos:
        raise SystemExit("error: --plain renders no photos; drop --photos or --plain")
    scene = SceneConfig(
        height=args.height,
        width=args.width,
        min_persons=low,
        max_persons=high,
        backgrounds=BackgroundPool.from_directory(args.photos) if args.photos else None,
    )
    config = SynthConfig(scene=scene, seed=args.seed)
    stats = generate(
        args.out,
        images=args.images,
        clips=args.clips,
        frames=args.frames,
        config=legacy(config) if args.plain else config,
        workers=args.workers,
    )
    print(json.dumps(stats, indent=2))
    return 0
