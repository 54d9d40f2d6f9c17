"""The recorded speed and accuracy of each runtime for one weights file: what ``auto`` chooses
from (``model.runtimes.choice``), written by ``benchmarks/cpu_paths.py --record``.

It lies next to the weights (``weights/ddp_default.safetensors`` ->
``weights/ddp_default.runtimes.json``) and names their SHA-256, so other weights never use it.
Accuracy is measured once per weights (it does not depend on the CPU, except for the runtimes
only some CPUs run); speed once per CPU model, since the ranking changes with the CPU.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.device import CpuInfo
from model.runtimes.names import REFERENCE_RUNTIME

RECORD_SUFFIX = ".runtimes.json"


def record_path(weights: Path) -> Path:
    """Where the record of ``weights`` lies: beside them, ``<stem>.runtimes.json``."""
    return weights.with_name(weights.stem + RECORD_SUFFIX)


@dataclass(frozen=True)
class Accuracy:
    """A runtime's scores on the held-out set, percent."""

    gps_ap: float
    mask_ap: float


@dataclass(frozen=True)
class Speed:
    """Each runtime's seconds per image on one CPU model."""

    cpu: str
    """``CpuInfo.name``."""
    capability: str
    """``CpuInfo.capability``: a CPU of another name but the same ISA uses this record when
    its own is missing."""
    threads: int
    date: str
    """ISO date of the measurement."""
    seconds_per_image: dict[str, float]
    """Runtime name -> the mean, over the benchmark's scenes (1 and 8 persons at the
    network's input size), of the median seconds per image."""


@dataclass(frozen=True)
class RuntimeRecord:
    weights_sha256: str
    heldout: str
    """The held-out set the accuracy was measured on (its directory's name)."""
    images: int
    """Images of it scored."""
    accuracy: dict[str, Accuracy]
    """Runtime name -> its scores (the reference ``torch`` among them)."""
    speeds: list[Speed] = field(default_factory=list)

    def gps_ap_loss(self, name: str) -> float | None:
        """The reference's GPS AP minus runtime ``name``'s (positive: ``name`` is worse); None
        when either was not measured."""
        if name not in self.accuracy or REFERENCE_RUNTIME not in self.accuracy:
            return None
        return self.accuracy[REFERENCE_RUNTIME].gps_ap - self.accuracy[name].gps_ap

    def speed_on(self, cpu: CpuInfo) -> Speed | None:
        """The speeds measured on ``cpu``'s model, else on a CPU of the same capability
        (the latest), else None."""
        same_name = [speed for speed in self.speeds if speed.cpu == cpu.name]
        same_isa = [speed for speed in self.speeds if speed.capability == cpu.capability]
        found = same_name or same_isa
        return max(found, key=lambda speed: speed.date) if found else None

    def merged(self, other: RuntimeRecord) -> RuntimeRecord:
        """This record updated by ``other`` (same weights): its accuracies replace these
        runtime by runtime, its speeds replace those of the same CPU model."""
        if other.weights_sha256 != self.weights_sha256:
            return other
        cpus = {speed.cpu for speed in other.speeds}
        return RuntimeRecord(
            weights_sha256=self.weights_sha256,
            heldout=other.heldout,
            images=other.images,
            accuracy={**self.accuracy, **other.accuracy},
            speeds=[s for s in self.speeds if s.cpu not in cpus] + list(other.speeds),
        )

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> RuntimeRecord:
        """Raises ValueError saying what is wrong with a malformed file."""
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return cls(
                weights_sha256=data["weights_sha256"],
                heldout=data["heldout"],
                images=int(data["images"]),
                accuracy={name: Accuracy(**value) for name, value in data["accuracy"].items()},
                speeds=[Speed(**speed) for speed in data["speeds"]],
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{path} is not a runtime record ({type(error).__name__}: {error}): re-write "
                "it with python -m benchmarks.cpu_paths --record"
            ) from None


def read_record(weights: Path) -> RuntimeRecord | None:
    """The record beside ``weights``; None if there is none."""
    path = record_path(weights)
    return RuntimeRecord.read(path) if path.is_file() else None
