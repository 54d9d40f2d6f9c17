"""The parametric human body: the ``anny`` package (Apache-2.0 code, CC0 MakeHuman data).

Every ``anny`` import of the project lives in this module; the rest of the data engine sees a
``BodyTemplate`` (the mesh at rest and its labels) and ``BodyModel.vertices`` (posed meshes).

Coordinates: metres, Z up, the body facing −Y, the person's left at +X. The mesh (anny's
``anny`` topology: 13,718 vertices, 27,420 triangles, 104 bones) has four connected
components: body, tongue and two eyes.

Cost: the first build of the model data takes ~1-3 min and writes ~790 MB into
``<cache>/anny``; only the ~51 MB compact file is read afterwards (~1 s), so the two
intermediate files are deleted after a build (``_prune_intermediates``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from model.data.cache import cache_dir

REGIONS = ("body", "head", "hand.R", "hand.L", "foot.L", "foot.R")
"""Coarse regions of anny's shipped face segmentation (eyes, mouth and tongue join ``head``)."""
_HEAD_EXTRAS = (
    "eye_back.L", "eye_front.L", "eye_back.R", "eye_front.R",
    "eye_cavity.L", "eye_cavity.R", "mouth_cavity", "tongue",
)  # fmt: skip
PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")
"""Shape parameters, each in [0, 1] (0.5 = average); ``age`` 0 is a young child."""


@dataclass(frozen=True)
class BodyTemplate:
    """The mesh at rest (average phenotype, identity pose) and its fixed labels.

    Attributes:
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside.
        rest_vertices: (V, 3) float32, metres.
        face_region: (F,) int64 index into ``REGIONS``.
        face_bone: (F,) int64, the bone with the largest summed skinning weight of the face.
        bone_labels: the J bone names (``upperarm01.L``, ...), index = bone id.
        bone_heads: (J, 3) float32, each bone's head (joint position) at rest.
        source: the package, version and topology the mesh comes from (a cache key).
    """

    faces: Tensor
    rest_vertices: Tensor
    face_region: Tensor
    face_bone: Tensor
    bone_labels: tuple[str, ...]
    bone_heads: Tensor
    source: str

    @property
    def num_vertices(self) -> int:
        return int(self.rest_vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])


def _anny_cache() -> Path:
    """Point anny (and warp, which anny imports) at the project cache; return anny's."""
    path = cache_dir() / "anny"
    import anny.paths
    import warp

    warp.config.quiet = True  # type: ignore[attr-defined]
    if warp.config.kernel_cache_dir is None:  # warp reads it when it initialises
        warp.config.kernel_cache_dir = str(cache_dir() / "warp")
    anny.paths.set_anny_cache_path(path)  # anny read $ANNY_CACHE_DIR at import: override it
    return path


def _prune_intermediates(path: Path) -> None:
    """Delete anny's intermediate build files once the compact model data exists."""
    for version_dir in path.glob("v*"):
        if any(version_dir.glob("build_compact_model_data_*.safetensors")):
            for pattern in ("build_model_data_*.safetensors", "load_data_*.safetensors"):
                for file in version_dir.glob(pattern):
                    file.unlink()


class BodyModel:
    """anny's full-body model on the CPU in float32, with torch (not warp) skinning.

    Poses are ``rotations`` (B, J, 3, 3): per bone, a rotation about the bone's head in
    world-aligned axes, applied on top of its parent's motion (anny's ``local-ref``
    parameterisation); identity everywhere is the rest A-pose.
    """

    def __init__(self) -> None:
        path = _anny_cache()
        import anny

        self._source = f"anny-{anny.__version__}/anny"
        self._model = anny.Anny(skinning_method="lbs").to(torch.float32).eval()
        _prune_intermediates(path)
        if tuple(self._model.phenotype_labels) != PHENOTYPES:
            raise RuntimeError(
                f"anny phenotypes changed: expected {PHENOTYPES}, "
                f"got {self._model.phenotype_labels}"
            )
        self.template = self._template()

    def _template(self) -> BodyTemplate:
        from anny.face_segmentation import get_face_segmentation_mask

        model = self._model
        faces = model.faces.to(torch.int64)
        region = torch.zeros(len(faces), dtype=torch.int64)
        for index, name in enumerate(REGIONS[1:], start=1):
            labels = [name, *_HEAD_EXTRAS] if name == "head" else [name]
            region[get_face_segmentation_mask(model, labels)] = index
        num_bones = len(model.bone_labels)
        dense = torch.zeros(model.template_vertices.shape[0], num_bones)
        dense.scatter_add_(1, model.vertex_bone_indices, model.vertex_bone_weights.float())
        with torch.no_grad():
            rest = model()
        return BodyTemplate(
            faces=faces,
            rest_vertices=rest["vertices"][0].float(),
            face_region=region,
            face_bone=dense[faces].sum(dim=1).argmax(dim=1),
            bone_labels=tuple(model.bone_labels),
            bone_heads=rest["rest_bone_heads"][0].float(),
            source=self._source,
        )

    @torch.no_grad()
    def vertices(self, rotations: Tensor, phenotypes: Tensor) -> Tensor:
        """Posed, shaped meshes.

        Args:
            rotations: (B, J, 3, 3) float32, per-bone rotations (see the class docstring).
            phenotypes: (B, 6) float32 in [0, 1], ordered as ``PHENOTYPES``.

        Returns:
            (B, V, 3) float32 vertices in metres; the root bone stays at the origin.
        """
        batch, num_bones = rotations.shape[:2]
        if rotations.shape[1:] != (len(self.template.bone_labels), 3, 3):
            raise ValueError(
                f"rotations must be (B, {len(self.template.bone_labels)}, 3, 3), "
                f"got {tuple(rotations.shape)}"
            )
        if phenotypes.shape != (batch, len(PHENOTYPES)):
            raise ValueError(
                f"phenotypes must be ({batch}, {len(PHENOTYPES)}), got {tuple(phenotypes.shape)}"
            )
        if batch == 0:
            return torch.zeros(0, self.template.num_vertices, 3)
        deltas = torch.eye(4).repeat(batch, num_bones, 1, 1)
        deltas[:, :, :3, :3] = rotations
        out = self._model(pose_parameters=deltas, phenotype_kwargs=phenotypes.float())
        return out["vertices"].float()
