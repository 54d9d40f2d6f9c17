"""Random body poses within joint limits, as per-bone rotations for ``BodyModel.vertices``.

A pose is a vector of joint angles (D degrees of freedom, radians), each in its own
[lower, upper] interval; 0 everywhere is anny's rest A-pose. Each degree of freedom rotates
one bone about an axis fixed in the parent's rest frame: a world axis (``x`` = the person's
left, ``y`` = backwards, ``z`` = up), the bone itself (``bone``: twist), or the hinge that
swings the bone towards the front or the back (``hinge-y`` / ``hinge+y``: elbow, knee).
Limits are written for the left side (and the spine); the right side mirrors them. The box
of limits is convex, so linear interpolation between two poses stays inside it (video).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_DEG = np.pi / 180
_CHILD = {
    "upperarm01": "lowerarm01", "lowerarm01": "wrist", "wrist": "finger3-1",
    "upperleg01": "lowerleg01", "lowerleg01": "foot", "foot": "toe3-1",
}  # fmt: skip
"""Joint that a bone points at (for ``bone`` and ``hinge`` axes)."""

JOINT_LIMITS: tuple[tuple[str, str, float, float], ...] = (
    # bone, axis, lower, upper (degrees); ".L" bones are mirrored onto ".R"
    ("spine05", "x", -10, 20), ("spine05", "y", -8, 8), ("spine05", "z", -12, 12),
    ("spine03", "x", -10, 20), ("spine03", "y", -8, 8), ("spine03", "z", -12, 12),
    ("spine01", "x", -8, 15), ("spine01", "y", -6, 6), ("spine01", "z", -10, 10),
    ("neck01", "x", -15, 25), ("neck01", "y", -12, 12), ("neck01", "z", -30, 30),
    ("head", "x", -20, 20), ("head", "y", -12, 12), ("head", "z", -25, 25),
    ("clavicle.L", "y", -12, 6), ("clavicle.L", "x", -8, 8),
    ("upperarm01.L", "x", -110, 40), ("upperarm01.L", "y", -100, 35),
    ("upperarm01.L", "bone", -45, 45),
    ("lowerarm01.L", "hinge-y", 0, 140), ("lowerarm01.L", "bone", -60, 60),
    ("wrist.L", "hinge-y", -50, 50), ("wrist.L", "x", -20, 20),
    ("upperleg01.L", "x", -100, 25), ("upperleg01.L", "y", -40, 10),
    ("upperleg01.L", "bone", -30, 30),
    ("lowerleg01.L", "hinge+y", 0, 135),
    ("foot.L", "x", -25, 35), ("foot.L", "y", -12, 12),
)  # fmt: skip


def rotation_matrices(rotvecs: np.ndarray) -> np.ndarray:
    """Rodrigues: (..., 3) rotation vectors (radians) -> (..., 3, 3) rotation matrices."""
    angle = np.linalg.norm(rotvecs, axis=-1, keepdims=True)
    axis = rotvecs / np.maximum(angle, 1e-12)
    x, y, z = np.moveaxis(axis, -1, 0)
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*x.shape, 3, 3)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def _axis(kind: str, bone: str, labels: tuple[str, ...], heads: np.ndarray) -> np.ndarray:
    """Unit rotation axis of one degree of freedom, in world-aligned rest axes."""
    base, _, side = bone.partition(".")
    if kind in ("x", "y", "z"):
        axis = np.eye(3)["xyz".index(kind)]
        return axis * np.array([1.0, -1.0, -1.0]) if side == "R" else axis  # axial mirror
    child = f"{_CHILD[base]}.{side}"
    direction = heads[labels.index(child)] - heads[labels.index(bone)]
    direction /= np.linalg.norm(direction)
    if kind == "bone":
        return direction
    towards = np.array([0.0, 1.0 if kind == "hinge+y" else -1.0, 0.0])
    hinge = np.cross(direction, towards)
    return hinge / np.linalg.norm(hinge)


class PoseSpace:
    """The D degrees of freedom of ``JOINT_LIMITS`` (left entries also applied mirrored)."""

    def __init__(self, bone_labels: tuple[str, ...], bone_heads: Tensor) -> None:
        """``bone_labels`` and ``bone_heads`` (J, 3) as in ``BodyTemplate``."""
        heads = bone_heads.numpy().astype(np.float64)
        entries = [*JOINT_LIMITS]
        entries += [(b[:-2] + ".R", k, lo, hi) for b, k, lo, hi in JOINT_LIMITS if b.endswith(".L")]
        self.num_bones = len(bone_labels)
        self.bone = np.array([bone_labels.index(b) for b, *_ in entries])
        self.axis = np.stack([_axis(k, b, bone_labels, heads) for b, k, *_ in entries])
        self.lower = np.array([lo for *_, lo, _ in entries]) * _DEG
        self.upper = np.array([hi for *_, hi in entries]) * _DEG

    @property
    def num_dofs(self) -> int:
        return len(self.bone)

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """(count, D) random joint angles inside the limits.

        Each person gets an 'activity' a ~ U(0.2, 1) scaling uniform draws from the limits
        (all intervals contain 0), so calm and extreme poses both occur.
        """
        activity = rng.uniform(0.2, 1.0, size=(count, 1))
        return activity * rng.uniform(self.lower, self.upper, size=(count, self.num_dofs))

    def rotations(self, angles: np.ndarray) -> Tensor:
        """(B, D) joint angles -> (B, J, 3, 3) float32 per-bone rotations (identity if free)."""
        if angles.ndim != 2 or angles.shape[1] != self.num_dofs:
            raise ValueError(f"angles must be (B, {self.num_dofs}), got {angles.shape}")
        per_dof = rotation_matrices(angles[..., None] * self.axis)  # [B, D, 3, 3]
        out = np.tile(np.eye(3), (len(angles), self.num_bones, 1, 1))
        for dof, bone in enumerate(self.bone):  # in table order: later dofs act first
            out[:, bone] = out[:, bone] @ per_dof[:, dof]
        return torch.from_numpy(out).float()
