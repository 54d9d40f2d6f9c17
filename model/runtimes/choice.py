"""``auto``: the fastest runtime on this CPU whose GPS AP loss against eager fp32 is at most
``MAX_GPS_AP_LOSS``, from the recorded benchmark (``model.runtimes.record``), never from a
measurement at start-up: the same weights, record, CPU and installed extras always give the
same runtime.

The rule, in order:

1. no record for these weights, or not on the CPU -> ``torch`` (the reference);
2. the runtimes the record timed on this CPU model (else on a CPU of the same ISA), that
   were scored, lose at most ``MAX_GPS_AP_LOSS`` GPS AP, and can run here (``unavailable``:
   extras missing, export not cached, no bf16 unit, ...);
3. of those, the least recorded seconds per image; ties go to the earlier of
   ``RUNTIME_NAMES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from model.device import CpuInfo
from model.runtimes.names import REFERENCE_RUNTIME, RUNTIME_NAMES, RuntimeName
from model.runtimes.record import RuntimeRecord

MAX_GPS_AP_LOSS = 0.5
"""GPS AP points (percent) a runtime may lose against eager fp32 and still be chosen."""


@dataclass(frozen=True)
class RuntimeChoice:
    """Which runtime runs, and why (logged at start-up, reported by ``/v1/model``)."""

    name: RuntimeName
    reason: str


def choose_runtime(
    record: RuntimeRecord | None,
    *,
    weights_sha256: str | None,
    cpu: CpuInfo,
    unavailable: Mapping[RuntimeName, str],
) -> RuntimeChoice:
    """The runtime ``auto`` stands for (module docstring). ``unavailable``: runtime -> why it
    cannot run here."""
    if record is None or weights_sha256 is None:
        return _reference("no benchmark record for these weights")
    if record.weights_sha256 != weights_sha256:
        return _reference(
            f"the benchmark record is for weights {record.weights_sha256[:12]}, these are "
            f"{weights_sha256[:12]}"
        )
    speed = record.speed_on(cpu)
    if speed is None:
        return _reference(f"no speed recorded on this CPU ({cpu.name}, {cpu.capability})")
    seconds = speed.seconds_per_image
    if REFERENCE_RUNTIME not in seconds:
        return _reference(f"the record on {speed.cpu} does not time {REFERENCE_RUNTIME}")
    passed_over: dict[RuntimeName, str] = {}
    for name in RUNTIME_NAMES:
        if name not in seconds:
            continue  # not timed there (e.g. bf16 on a CPU without it)
        loss = record.gps_ap_loss(name)
        if loss is None:
            passed_over[name] = "not scored"
        elif loss > MAX_GPS_AP_LOSS:
            passed_over[name] = f"GPS AP {-loss:+.1f}"
        elif name in unavailable:
            passed_over[name] = unavailable[name]
    fits = [name for name in RUNTIME_NAMES if name in seconds and name not in passed_over]
    if not fits:  # the reference itself is unscored or unavailable
        why = ", ".join(f"{name} ({why})" for name, why in passed_over.items())
        return _reference(f"no recorded runtime qualifies: {why}")
    best = min(fits, key=lambda name: (seconds[name], RUNTIME_NAMES.index(name)))
    loss = record.gps_ap_loss(best)
    assert loss is not None  # in fits
    reason = (
        f"{seconds[REFERENCE_RUNTIME] / seconds[best]:.2f}x {REFERENCE_RUNTIME} "
        f"({seconds[best]:.3f} s vs {seconds[REFERENCE_RUNTIME]:.3f} s per image on "
        f"{speed.cpu}, {speed.threads} thread{'s' * (speed.threads != 1)}, {speed.date}), "
        f"GPS AP {-loss:+.1f} on {record.heldout} ({record.images} images)"
    )
    faster = [
        f"{name} ({why})" for name, why in passed_over.items() if seconds[name] < seconds[best]
    ]
    if faster:
        reason += "; faster but passed over: " + ", ".join(faster)
    return RuntimeChoice(best, reason)


def _reference(why: str) -> RuntimeChoice:
    return RuntimeChoice(REFERENCE_RUNTIME, f"{why}: the reference, eager fp32")
