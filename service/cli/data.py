"""``ddp synth``: render a synthetic DensePose-COCO data set."""

from __future__ import annotations

import argparse
import json

from model.data.scene import SceneConfig
from model.data.synth import SynthConfig, generate


def run_synth(args: argparse.Namespace) -> int:
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
