"""The 24 DensePose charts on the body mesh: a chart per face and U, V per face corner.

Assignment (left/right are the person's own; ids as DensePose-COCO's ``dp_I``):

* anny's shipped coarse segmentation gives head (with eyes, mouth, tongue), hands and feet;
  every other face goes to the part of the bone with the largest summed skinning weight
  (``_bone_part``: pelvis/spine/clavicle/neck01 → torso, neck02+ → head, shoulder01/upperarm →
  upper arm, lowerarm/wrist → lower arm, upperleg → upper leg, lowerleg/foot bone → lower leg);
* parts with two charts are split by a plane through the part's axis: front (−Y, the way
  the body faces) / back for torso and limbs, left (+X) / right for the head. Of each pair the
  lower id is the back (torso 1 back / 2 front, limbs 7-22 back = lower id) and 23 is the
  right half of the head, 24 the left.

Coordinates (continuous inside a chart, on the rest mesh): the part's axis is +Z for torso
and head, else the principal axis of its vertices pointing away from the torso (toes forward
for feet). V ∈ [0, 1] runs along the axis (0 at the bottom of torso/head, at the proximal end
of limbs, hands and feet); U ∈ [0, 1] is the angle around the axis across the half-cylinder of
a split chart (U = 1 on the side of axis × split direction in both halves). Hands and feet
wrap all around (U = 0.5 in front of a hand, on top of a foot; one seam behind the hand /
under the sole, where corners of straddling faces are clamped to U = 1). The axis crossing
the surface (top of the head) is a pole where U is undefined, as on any cylinder map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from model.config import NUM_PARTS
from model.data.body import REGIONS, BodyTemplate
from model.data.cache import keyed_cache_path, save_npz

ATLAS_VERSION = 1
"""Bump when the assignment rules change: the cached atlas is keyed by it."""

COARSE_PARTS = (
    "torso", "hand.R", "hand.L", "foot.L", "foot.R", "upper_leg.R", "upper_leg.L",
    "lower_leg.R", "lower_leg.L", "upper_arm.L", "upper_arm.R", "lower_arm.L",
    "lower_arm.R", "head",
)  # fmt: skip
"""DensePose-COCO's 14 coarse parts (``dp_masks`` index i is part i + 1)."""

_CHARTS: dict[str, tuple[int, ...]] = {
    "torso": (1, 2),
    "hand.R": (3,),
    "hand.L": (4,),
    "foot.L": (5,),
    "foot.R": (6,),
    "upper_leg.R": (7, 9),
    "upper_leg.L": (8, 10),
    "lower_leg.R": (11, 13),
    "lower_leg.L": (12, 14),
    "upper_arm.L": (15, 17),
    "upper_arm.R": (16, 18),
    "lower_arm.L": (19, 21),
    "lower_arm.R": (20, 22),
    "head": (23, 24),
}
"""Charts of each coarse part: (negative half, positive half) of the split, or one chart."""

FINE_TO_COARSE = np.zeros(NUM_PARTS + 1, dtype=np.int64)
"""(25,) coarse part (1..14, 0 = background) of each chart I."""
for _coarse, _name in enumerate(COARSE_PARTS, start=1):
    FINE_TO_COARSE[list(_CHARTS[_name])] = _coarse

_FRONT = np.array([0.0, -1.0, 0.0])
_UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class ChartAtlas:
    """DensePose charts on the template mesh.

    Attributes:
        face_chart: (F,) int64, chart I in 1..24 of every face.
        corner_uv: (F, 3, 2) float32, U and V in [0, 1] at each corner of each face.
    """

    face_chart: Tensor
    corner_uv: Tensor


def _bone_part(bone: str) -> str:
    """Coarse part of a body-region face whose dominant bone is ``bone``."""
    base, _, side = bone.partition(".")
    if base.startswith(("neck02", "neck03", "head", "eye", "jaw")):
        return "head"
    limbs = {
        "shoulder01": "upper_arm", "upperarm01": "upper_arm", "upperarm02": "upper_arm",
        "lowerarm01": "lower_arm", "lowerarm02": "lower_arm", "wrist": "lower_arm",
        "upperleg01": "upper_leg", "upperleg02": "upper_leg",
        "lowerleg01": "lower_leg", "lowerleg02": "lower_leg", "foot": "lower_leg",
    }  # fmt: skip
    if base in limbs:
        return f"{limbs[base]}.{side}"
    if base.startswith(("finger", "metacarpal")):
        return f"hand.{side}"
    if base.startswith("toe"):
        return f"foot.{side}"
    return "torso"


def face_parts(template: BodyTemplate) -> np.ndarray:
    """(F,) int64 coarse part index (into ``COARSE_PARTS``) of every face."""
    region_part = {"head": "head", "hand.R": "hand.R", "hand.L": "hand.L",
                   "foot.L": "foot.L", "foot.R": "foot.R"}  # fmt: skip
    bone_part = np.array(
        [COARSE_PARTS.index(_bone_part(b)) for b in template.bone_labels], dtype=np.int64
    )
    parts = bone_part[template.face_bone.numpy()]
    regions = template.face_region.numpy()
    for index, name in enumerate(REGIONS):
        if name in region_part:
            parts[regions == index] = COARSE_PARTS.index(region_part[name])
    return parts


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _frame(name: str, points: np.ndarray, torso_centre: np.ndarray) -> tuple[np.ndarray, ...]:
    """(centre, axis, split direction) of a part from its rest vertices (P, 3)."""
    centre = points.mean(axis=0)
    if name in ("torso", "head"):
        axis = _UP
    else:
        _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
        axis = vt[0]
        towards = _FRONT if name.startswith("foot") else centre - torso_centre
        axis = axis if axis @ towards > 0 else -axis
    if name == "head":
        split = np.array([1.0, 0.0, 0.0])
    elif name.startswith("foot"):
        split = _UP
    else:
        split = _FRONT
    split = _unit(split - (split @ axis) * axis)
    return centre, axis, split


def _part_uv(
    points: np.ndarray, frame: tuple[np.ndarray, ...], positive: np.ndarray, wrap: bool
) -> np.ndarray:
    """(P, 2) U, V of points (P, 3); ``positive`` (P,) bool selects the half of each point."""
    centre, axis, split = frame
    offset = points - centre
    along = offset @ axis
    across = offset - along[:, None] * axis
    side = across @ np.cross(axis, split)
    facing = across @ split
    if wrap:
        u = (np.arctan2(side, facing) + np.pi) / (2 * np.pi)
    else:
        u = (np.arctan2(side, np.where(positive, facing, -facing)) + np.pi / 2) / np.pi
    return np.stack([np.clip(u, 0.0, 1.0), along], axis=1)


def build_atlas(template: BodyTemplate) -> ChartAtlas:
    """Assign every face of the template to a chart and give its corners U, V (uncached)."""
    vertices = template.rest_vertices.numpy().astype(np.float64)
    faces = template.faces.numpy()
    parts = face_parts(template)
    torso_vertices = np.unique(faces[parts == COARSE_PARTS.index("torso")])
    torso_centre = vertices[torso_vertices].mean(axis=0)
    face_chart = np.zeros(len(faces), dtype=np.int64)
    corner_uv = np.zeros((len(faces), 3, 2))
    for index, name in enumerate(COARSE_PARTS):
        selected = np.flatnonzero(parts == index)
        part_faces = faces[selected]
        frame = _frame(name, vertices[np.unique(part_faces)], torso_centre)
        charts = _CHARTS[name]
        positive = (vertices[part_faces].mean(axis=1) - frame[0]) @ frame[2] > 0
        face_chart[selected] = np.where(positive, charts[-1], charts[0])
        corners = vertices[part_faces].reshape(-1, 3)
        uv = _part_uv(corners, frame, np.repeat(positive, 3), wrap=len(charts) == 1)
        uv = uv.reshape(-1, 3, 2)
        along = uv[..., 1]
        uv[..., 1] = (along - along.min()) / (along.max() - along.min())
        if len(charts) == 1:  # faces straddling the seam: clamp their low corners to U = 1
            straddle = np.ptp(uv[..., 0], axis=1) > 0.5
            low = straddle[:, None] & (uv[..., 0] < 0.5)
            uv[..., 0][low] = 1.0
        corner_uv[selected] = uv
    return ChartAtlas(
        face_chart=torch.from_numpy(face_chart),
        corner_uv=torch.from_numpy(corner_uv).float(),
    )


def load_atlas(template: BodyTemplate) -> ChartAtlas:
    """``build_atlas``, cached in ``<cache>/charts/``, keyed by ``ATLAS_VERSION``, the mesh's
    source and its integer labels (float rest positions vary in the last bits with threads)."""
    path = keyed_cache_path(
        "charts",
        f"atlas_v{ATLAS_VERSION}",
        template.source.encode(),
        template.faces.numpy().tobytes(),
        template.face_bone.numpy().tobytes(),
        template.face_region.numpy().tobytes(),
    )
    if path.is_file():
        with np.load(path) as data:
            return ChartAtlas(
                face_chart=torch.from_numpy(data["face_chart"]),
                corner_uv=torch.from_numpy(data["corner_uv"]),
            )
    atlas = build_atlas(template)
    save_npz(
        path,
        compressed=True,
        face_chart=atlas.face_chart.numpy(),
        corner_uv=atlas.corner_uv.numpy(),
    )
    return atlas
