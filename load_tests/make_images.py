"""Render the load tests' inputs with the data engine into ``load_tests/images/``:
``persons_NN.jpg`` (N = 0, 1, 3, 8, 15 persons, each covering the same area, on a grid:
``model.data.crowd.CrowdBuilder``, at the default network's input size) and ``clip.mp4`` (a
short H.264 clip of people moving: ``model.data.synth.clip_scenes``). Each file is kept at
most ``MAX_BYTES``.

``python -m load_tests.make_images [--out load_tests/images]`` (about 10 s; needs the
``data`` and ``video`` extras).
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from load_tests.scenarios import CLIP_NAME, IMAGES_DIR, PERSON_COUNTS, image_path
from model.config import InputConfig

MAX_BYTES = 100_000
IMAGE_SIZE = (InputConfig().short_side, InputConfig().max_side)
"""(H, W): the default network's input size, so the service computes the images unresized."""
PERSON_FRACTION = 0.01
"""Each person's visible area / image area (about 110 px tall at 384x512)."""
CLIP_SIZE = (240, 320)
CLIP_FRAMES, CLIP_FPS, CLIP_PERSONS = 16, 10.0, 3


def jpeg(image: np.ndarray, max_bytes: int = MAX_BYTES) -> bytes:
    """(H, W, 3) uint8 RGB as the best-quality JPEG (quality 90 down to 50) within
    ``max_bytes``."""
    for quality in range(90, 45, -5):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= max_bytes:
            return buffer.getvalue()
    raise ValueError(f"no JPEG of this image fits in {max_bytes} bytes")


def write_images(out: Path, seed: int) -> list[Path]:
    from model.data.crowd import CrowdBuilder
    from model.data.synth import load_renderer

    height, width = IMAGE_SIZE
    builder = CrowdBuilder(load_renderer(), height=height, width=width, seed=seed)
    paths = []
    for persons in PERSON_COUNTS:
        path = out / image_path(persons).name
        path.write_bytes(jpeg(builder.build(persons, PERSON_FRACTION).image))
        paths.append(path)
    return paths


def render_clip(
    path: Path,
    *,
    frames: int,
    size: tuple[int, int],
    fps: float,
    persons: int,
    seed: int,
    crf: int,
    scale_range: tuple[float, float] | None = None,
) -> Path:
    """An H.264 MP4 at ``path`` of ``frames`` frames (``size``: height, width) of ``persons``
    people walking, from the data engine's renderer (``model.data.synth.clip_scenes``);
    ``scale_range``: person heights as a fraction of the image's (None: the engine's)."""
    from model.data.scene import SceneConfig
    from model.data.synth import clip_scenes, load_renderer
    from model.video.io import H264Writer

    height, width = size
    renderer = load_renderer()
    scale = {} if scale_range is None else {"scale_range": scale_range}
    config = SceneConfig(
        height=height, width=width, min_persons=persons, max_persons=persons, **scale
    )
    scenes = clip_scenes(np.random.default_rng(seed), config, renderer.pose_space, frames)
    with H264Writer(path, width=width, height=height, fps=fps, crf=crf) as writer:
        for scene in scenes:
            writer.write(renderer.render(scene, height, width).image)
    return path


def write_clip(out: Path, seed: int, crf: int = 30) -> Path:
    path = render_clip(
        out / CLIP_NAME,
        frames=CLIP_FRAMES,
        size=CLIP_SIZE,
        fps=CLIP_FPS,
        persons=CLIP_PERSONS,
        seed=seed,
        crf=crf,
        scale_range=(0.5, 0.9),
    )
    if path.stat().st_size > MAX_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size} bytes, over {MAX_BYTES}: raise crf")
    return path


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=IMAGES_DIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = [*write_images(args.out, args.seed), write_clip(args.out, args.seed)]
    for path in paths:
        print(f"{path}: {path.stat().st_size} bytes")
    return paths


if __name__ == "__main__":
    main()
