"""The data card's picture of the two recipes: the original engine above, the new below.

``python -m model.data.comparison --photos DIR [DIR ...] --out docs/data/engine_samples.png``
renders the same scene seeds with ``synth.legacy`` of the configuration (top row) and with
the configuration itself, photographs from ``--photos`` as backgrounds (bottom row).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from model.data.backgrounds import BackgroundPool
from model.data.scene import Renderer, SceneConfig, sample_scene
from model.data.synth import SynthConfig, legacy, load_renderer
from model.outputs.visualize import write_png

_LABEL_HEIGHT = 22


def _labelled(row: np.ndarray, text: str) -> np.ndarray:
    """(H, W, 3) uint8 -> (H + label, W, 3): the row under a white caption strip."""
    strip = np.full((_LABEL_HEIGHT, row.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(strip, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, row], axis=0)


def comparison_grid(renderer: Renderer, config: SceneConfig, seeds: Sequence[int]) -> np.ndarray:
    """(2 (H + label), len(seeds) W, 3) uint8: the scenes of ``seeds`` by the original
    engine (top row) and by ``config`` (bottom row)."""
    old = legacy(SynthConfig(scene=config)).scene
    rows = []
    for name, scene_config in (("original engine", old), ("new engine", config)):
        images = []
        for seed in seeds:
            scene = sample_scene(np.random.default_rng(seed), scene_config, renderer.pose_space)
            images.append(renderer.render(scene, config.height, config.width).image)
        rows.append(_labelled(np.concatenate(images, axis=1), f"{name}, seeds {list(seeds)}"))
    return np.concatenate(rows, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", nargs="+", required=True, help="directories of photographs")
    parser.add_argument("--out", default="docs/data/engine_samples.png")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args()
    files = [f for root in args.photos for f in BackgroundPool.from_directory(root).paths]
    config = SceneConfig(
        height=args.height, width=args.width, backgrounds=BackgroundPool.from_paths(files)
    )
    torch.set_num_threads(1)  # as in the workers: float results depend on the thread count
    grid = comparison_grid(load_renderer(), config, args.seeds)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_png(args.out, grid)


if __name__ == "__main__":
    main()
