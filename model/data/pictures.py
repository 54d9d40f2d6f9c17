"""Pictures for ``docs/data/``: the chart atlas on the body and sample scenes with labels.

``python -m model.data.pictures --out docs/data`` (about 10 s).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import cv2
import numpy as np

from model.data.appearance import sample_outfit
from model.data.body import PHENOTYPES
from model.data.labels import as_result
from model.data.scene import Camera, Person, Renderer, Scene, SceneConfig, sample_scene
from model.data.synth import load_renderer
from model.outputs.visualize import draw_overlay, write_png


def chart_picture(renderer: Renderer, size: int = 512) -> np.ndarray:
    """(size, 2·size, 3) uint8: the rest-pose body, front and back, in chart colours + U/V lines."""
    outfit = sample_outfit(np.random.default_rng(0))
    person = Person(
        angles=np.zeros(renderer.pose_space.num_dofs),
        phenotype=np.full(len(PHENOTYPES), 0.5),
        yaw=0.0,
        position=np.array([0.0, 0.0, 0.0]),
        outfit=outfit,
    )
    camera = Camera(focal=size * 2.2, position=np.array([0.0, -4.3, 0.85]), pitch=0.0, roll=0.0)
    scene = Scene(
        persons=(person,), camera=camera, light=np.array([0.3, 0.8, -0.5]), ambient=0.6,
        diffuse=0.4, background_seed=0, noise=0.0, blur=0.0,
    )  # fmt: skip
    views = []
    for yaw in (0.0, np.pi):
        turned = dataclasses.replace(scene, persons=(dataclasses.replace(person, yaw=yaw),))
        out = renderer.render(turned, size, size)
        gray = np.full_like(out.image, 235)
        views.append(draw_overlay(gray, as_result(out.parts, out.uv, out.instance), alpha=1.0))
    return np.concatenate(views, axis=1)


def sample_grid(renderer: Renderer, config: SceneConfig, seeds: range) -> np.ndarray:
    """Rows of (image, labels overlay) pairs for the given scene seeds."""
    rows = []
    for seed in seeds:
        scene = sample_scene(np.random.default_rng(seed), config, renderer.pose_space)
        out = renderer.render(scene, config.height, config.width)
        overlay = draw_overlay(out.image, as_result(out.parts, out.uv, out.instance))
        rows.append(np.concatenate([out.image, overlay], axis=1))
    return np.concatenate(rows, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/data", help="output directory")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    renderer = load_renderer()
    write_png(out / "charts.png", chart_picture(renderer))
    grid = cv2.cvtColor(sample_grid(renderer, SceneConfig(), range(4)), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(out / "samples.jpg"), grid, [cv2.IMWRITE_JPEG_QUALITY, 85])


if __name__ == "__main__":
    main()
