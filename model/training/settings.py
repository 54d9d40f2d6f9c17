"""What a training run and the recipe's rendered data are: the one home of their defaults.

Free of torch, so the command line reads its defaults from here without loading the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from model.data.cache import cache_dir


@dataclass(frozen=True)
class TrainSettings:
    """One training run; ``steps`` is the length of the LR schedule, not of this session."""

    steps: int = 1000
    batch_size: int = 4
    lr: float = 0.01
    warmup_steps: int = 150
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    workers: int = 2
    seed: int = 0
    clip_grad_norm: float | None = 10.0
    """Max global gradient norm (None: no clipping)."""
    init_weights: Path | None = None
    """Start from these weights (a checkpoint of the same network) instead of ImageNet's: a
    second training stage, e.g. on the ``world`` engine after the ``plain`` one."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.warmup_steps < 0 or self.workers < 0:
            raise ValueError(f"need lr > 0, warmup_steps >= 0, workers >= 0; got {self}")


HELD_OUT_SEED_OFFSET = 1
"""The held-out set renders with ``seed + 1``: per-image seeds are (seed, index), so no scene
of the held-out set is a training scene."""
CALIBRATION_SEED_OFFSET = 2
"""The validation set for detection settings: ``seed + 2``, disjoint from both others."""

DataEngine = Literal["plain", "world"]
"""``plain``: the original engine (synthetic backdrops, no distractors, camera effects or
person-free images); ``world``: domain-randomised, on real person-free photographs
(``model.data.photos``' training pool), with occluders, camera effects and hard negatives."""


@dataclass(frozen=True)
class DataSettings:
    """The synthetic sets the recipe renders (sizes match the default input config).

    Three disjoint sets, by seed: training (``seed``, ``engine``), the held-out set the recipe
    reports (``seed + 1``, always ``plain``: the same 200 images every recipe is scored on),
    and a validation set (``seed + 2``, ``engine``) on which the detection threshold and mask
    NMS are chosen (``model.training.calibrate``).
    """

    train_images: int = 4000
    val_images: int = 200
    """Held-out images (seed + 1)."""
    calibration_images: int = 100
    """Validation images (seed + 2) for choosing detection settings; 0: keep the config's."""
    seed: int = 0
    height: int = 384
    width: int = 512
    engine: DataEngine = "world"
    workers: int = 2
    data_root: Path | None = None
    """Where rendered sets are cached; None: ``<cache>/datasets``."""
    background_photos: int = 21
    """World engine: the first this many photos of the training pool, in manifest order (the
    pool only grows at its end, so a count names the same photos for good). 21: the pool the
    shipped network's world-engine stages were trained on."""
    persons: tuple[int, int] | None = None
    """People per training and validation image, (min, max); None: ``SceneConfig``'s. The
    held-out set always has the default layout."""
    person_heights: tuple[float, float] | None = None
    """Standing height of a person as a fraction of the image height, (min, max),
    log-uniform; None: ``SceneConfig.scale_range``."""

    def __post_init__(self) -> None:
        if self.persons is not None and not 0 <= self.persons[0] <= self.persons[1]:
            raise ValueError(f"persons must be (min, max) with 0 <= min <= max, got {self.persons}")
        heights = self.person_heights
        if heights is not None and not 0 < heights[0] <= heights[1]:
            raise ValueError(f"person_heights must be 0 < min <= max, got {heights}")

    def directory(self, split: str, images: int, seed: int, engine: DataEngine) -> Path:
        """Where a rendered set lies; a world-engine set's name carries its photo count."""
        root = self.data_root if self.data_root is not None else cache_dir() / "datasets"
        name = f"{split}-{engine}-seed{seed}-n{images}"
        if engine == "world":
            name += f"-photos{self.background_photos}"
        if self.persons is not None:
            name += f"-persons{self.persons[0]}-{self.persons[1]}"
        if self.person_heights is not None:
            name += f"-heights{self.person_heights[0]:g}-{self.person_heights[1]:g}"
        return root / f"{name}-{self.height}x{self.width}"

    def training_split(self) -> DataSplit:
        return DataSplit(self, "train", self.train_images, self.seed, self.engine)

    def held_out_split(self) -> DataSplit:
        """Plain engine, ``seed + 1``, the scenes' default people per image and heights
        whatever these settings train on: the same images for every recipe."""
        default_layout = dataclasses.replace(self, persons=None, person_heights=None)
        seed = self.seed + HELD_OUT_SEED_OFFSET
        return DataSplit(default_layout, "heldout", self.val_images, seed, "plain")

    def calibration_split(self) -> DataSplit:
        """The validation set detection settings are chosen on: ``seed + 2``, this engine
        and layout."""
        seed = self.seed + CALIBRATION_SEED_OFFSET
        return DataSplit(self, "calibration", self.calibration_images, seed, self.engine)

    def photo_count(self) -> int:
        """``background_photos``, checked against the manifest's training pool."""
        from model.data.photos import load_manifest  # OpenCV: only when a set is rendered

        pool = len(load_manifest().training_pool)
        if not 0 < self.background_photos <= pool:
            count = self.background_photos
            raise ValueError(f"background_photos must be in 1..{pool}, got {count}")
        return self.background_photos


@dataclass(frozen=True)
class DataSplit:
    """One set the recipe renders: the settings it renders with (size, layout, photos,
    workers), its split name, size, seed and engine; by those, where it lies."""

    data: DataSettings
    split: str
    images: int
    seed: int
    engine: DataEngine

    @property
    def directory(self) -> Path:
        return self.data.directory(self.split, self.images, self.seed, self.engine)
