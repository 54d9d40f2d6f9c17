"""Generate a synthetic DensePose-COCO data set: images, dense label maps, annotations.

Layout of the output directory::

    annotations.json   DensePose-COCO (images, annotations, categories); video frames carry
                       ``vid_id``, ``frame_id``, ``nframes`` as DensePose-PoseTrack does
    images/000000.jpg  still images; images/clips/clip0000/000000.jpg: video frames
    dense/...npz       full label maps per image (``model.data.dense``), named like the image
    stats.json         counts, persons per image, foreground fraction, speed

Every image is a pure function of (seed, image index) and every clip of (seed, clip index),
whatever the number of workers. A share ``negative_fraction`` of the stills has nobody in it
(hard negatives: backdrop, distractors and camera effects only; no annotations). ``legacy``
gives the configuration that renders the engine's original data. Workers are processes with
one torch thread each (two threads per process are much slower than two processes on a small
CPU); each decodes the photographs it uses once (``backgrounds.load_photo``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from model.data.body import BodyModel
from model.data.charts import load_atlas
from model.data.coco import CATEGORIES, person_annotations
from model.data.dense import write_dense
from model.data.poses import PoseSpace
from model.data.scene import (
    RenderedScene,
    Renderer,
    Scene,
    SceneConfig,
    interpolate_scenes,
    sample_scene,
)

_IMAGE_STREAM, _CLIP_STREAM, _NEGATIVE_STREAM = 0, 1, 2
_FPS = 10.0
"""Frame rate assumed for the motion of video clips."""


@dataclass(frozen=True)
class SynthConfig:
    scene: SceneConfig = dataclasses.field(default_factory=SceneConfig)
    seed: int = 0
    points_per_person: int = 100
    """Like DensePose-COCO (about 100 annotated points per person)."""
    min_pixels: int = 100
    """People with fewer visible pixels are annotated ``iscrowd`` = 1 (ignored)."""
    jpeg_quality: int = 92
    negative_fraction: float = 0.1
    """Share of the stills rendered with nobody in them (drawn per image)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.negative_fraction <= 1.0:
            raise ValueError(f"negative_fraction must be in [0, 1], got {self.negative_fraction}")


def legacy(config: SynthConfig) -> SynthConfig:
    """``config`` as the original engine rendered it: synthetic backdrops, original outfits
    and light, no distractors, no camera effects, no person-free images."""
    scene = dataclasses.replace(
        config.scene, backgrounds=None, appearance=None, distractors=None, photometric=None
    )
    return dataclasses.replace(config, scene=scene, negative_fraction=0.0)


@dataclass
class Written:
    """One written image: its ``images`` record, annotations (ids not yet set), foreground."""

    image: dict[str, Any]
    annotations: list[dict[str, Any]]
    foreground: float


def load_renderer() -> Renderer:
    """The body model (built and cached on first use), its chart atlas and pose space."""
    body = BodyModel()
    pose_space = PoseSpace(body.template.bone_labels, body.template.bone_heads)
    return Renderer(body, load_atlas(body.template), pose_space)


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))


def clip_scenes(
    rng: np.random.Generator, config: SceneConfig, pose_space: PoseSpace, frames: int
) -> list[Scene]:
    """``frames`` scenes of one clip: people walk, turn and change pose; the camera drifts."""
    start = sample_scene(rng, config, pose_space)
    seconds = frames / _FPS
    persons = []
    for person in start.persons:
        speed = rng.uniform(0.0, 1.3)
        heading = np.array([np.sin(person.yaw), -np.cos(person.yaw), 0.0])
        target = pose_space.sample(rng, 1)[0]
        persons.append(
            dataclasses.replace(
                person,
                angles=0.5 * (person.angles + target),
                yaw=person.yaw + rng.uniform(-0.4, 0.4),
                position=person.position + speed * seconds * heading,
            )
        )
    camera = dataclasses.replace(
        start.camera,
        position=start.camera.position + rng.uniform(-0.3, 0.3, size=3) * seconds,
        pitch=start.camera.pitch + rng.uniform(-0.05, 0.05),
    )
    end = dataclasses.replace(start, persons=tuple(persons), camera=camera)
    return [interpolate_scenes(start, end, f / max(frames - 1, 1)) for f in range(frames)]


def write_rendered(
    out_dir: Path,
    name: str,
    rendered: RenderedScene,
    config: SynthConfig,
    rng: np.random.Generator,
    extra: dict[str, Any],
) -> Written:
    """Write ``images/<name>.jpg`` and ``dense/<name>.npz``; return the records for the JSON."""
    image_path, dense_path = Path("images") / f"{name}.jpg", Path("dense") / f"{name}.npz"
    for path in (image_path, dense_path):
        (out_dir / path).parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(rendered.image, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(out_dir / image_path), bgr, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
    write_dense(out_dir / dense_path, rendered.parts, rendered.uv, rendered.instance)
    height, width = rendered.parts.shape
    annotations = person_annotations(
        rendered.parts,
        rendered.uv,
        rendered.instance,
        rng,
        num_points=config.points_per_person,
        min_pixels=config.min_pixels,
    )
    image = {
        "file_name": image_path.as_posix(),
        "height": height,
        "width": width,
        "dense_file": dense_path.as_posix(),
        **extra,
    }
    return Written(image, annotations, float((rendered.instance > 0).mean()))


def _image_job(renderer: Renderer, out_dir: Path, config: SynthConfig, index: int) -> list[Written]:
    rng = _rng(config.seed, _IMAGE_STREAM, index)
    scene_config = config.scene
    if _rng(config.seed, _NEGATIVE_STREAM, index).random() < config.negative_fraction:
        scene_config = dataclasses.replace(scene_config, min_persons=0, max_persons=0)
    scene = sample_scene(rng, scene_config, renderer.pose_space)
    rendered = renderer.render(scene, config.scene.height, config.scene.width)
    return [write_rendered(out_dir, f"{index:06d}", rendered, config, rng, {})]


def _clip_job(
    renderer: Renderer, out_dir: Path, config: SynthConfig, clip: int, frames: int
) -> list[Written]:
    rng = _rng(config.seed, _CLIP_STREAM, clip)
    written = []
    for frame, scene in enumerate(clip_scenes(rng, config.scene, renderer.pose_space, frames)):
        rendered = renderer.render(scene, config.scene.height, config.scene.width)
        extra = {"vid_id": clip + 1, "frame_id": frame + 1, "nframes": frames}
        name = f"clips/clip{clip:04d}/{frame:06d}"
        written.append(write_rendered(out_dir, name, rendered, config, rng, extra))
    return written


_WORKER: dict[str, Renderer] = {}


def _init_worker() -> None:
    torch.set_num_threads(1)
    _WORKER["renderer"] = load_renderer()


def _run_job(job: tuple[Path, SynthConfig, str, int, int]) -> list[Written]:
    out_dir, config, kind, index, frames = job
    renderer = _WORKER["renderer"]
    if kind == "image":
        return _image_job(renderer, out_dir, config, index)
    return _clip_job(renderer, out_dir, config, index, frames)


def _results(
    jobs: list[tuple[Path, SynthConfig, str, int, int]], workers: int
) -> Iterator[list[Written]]:
    """Job results in job order, from ``workers`` processes (in this process when 1)."""
    if workers <= 1:
        _init_worker()
        yield from map(_run_job, jobs)
        return
    context = get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        yield from pool.map(_run_job, jobs, chunksize=1)


def generate(
    out_dir: str | Path,
    *,
    images: int,
    config: SynthConfig,
    clips: int = 0,
    frames: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Render ``images`` stills and ``clips`` clips of ``frames`` frames into ``out_dir``.

    Returns the statistics also written to ``stats.json``.
    """
    if images < 0 or clips < 0 or (clips and frames < 1):
        raise ValueError(f"need images >= 0, clips >= 0, frames >= 1: {images}, {clips}, {frames}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(out, config, "image", i, 0) for i in range(images)]
    jobs += [(out, config, "clip", k, frames) for k in range(clips)]
    start = time.monotonic()
    written: list[Written] = []
    total = images + clips * frames
    with tqdm(total=total, desc="synth", unit="image", disable=not progress) as bar:
        for result in _results(jobs, workers):
            written += result
            bar.update(len(result))
    seconds = time.monotonic() - start
    dataset = dataset_json(written)
    (out / "annotations.json").write_text(json.dumps(dataset))
    stats = _stats(written, dataset, seconds, workers)
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def dataset_json(written: list[Written]) -> dict[str, Any]:
    """The DensePose-COCO JSON of written images: ids from 1 in order (images may have no
    annotations)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, item in enumerate(written, start=1):
        images.append({"id": image_id, **item.image})
        for annotation in item.annotations:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **annotation})
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def _stats(
    written: list[Written], dataset: dict[str, Any], seconds: float, workers: int
) -> dict[str, Any]:
    foreground = np.array([w.foreground for w in written]) if written else np.zeros(1)
    counted = [sum(not a["iscrowd"] for a in w.annotations) for w in written] or [0]
    annotations = dataset["annotations"]
    return {
        "images": len(written),
        "persons": int(sum(counted)),
        "ignored_persons": int(sum(a["iscrowd"] for a in annotations)),
        "persons_per_image": {"mean": float(np.mean(counted)), "max": int(np.max(counted))},
        "foreground_fraction": {
            "mean": float(foreground.mean()),
            "min": float(foreground.min()),
            "max": float(foreground.max()),
        },
        "points": int(sum(len(a.get("dp_x", [])) for a in annotations)),
        "seconds": round(seconds, 2),
        "images_per_second": round(len(written) / seconds, 2) if seconds > 0 else None,
        "workers": workers,
    }
