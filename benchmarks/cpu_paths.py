"""The CPU runtimes side by side: seconds per image with 1 and 8 persons, accuracy on the
held-out set, start-up time and resident memory; the record ``DDP_RUNTIME=auto`` chooses from.

``python -m benchmarks.cpu_paths --out docs/benchmarks [--weights W] [--images N] [--record]``

Runtimes (``model.runtimes.names``): ``torch`` (eager fp32, the reference),
``torch-channels-last``, ``torch-compile`` (inductor), ``torch-bf16`` (only on a CPU with AMX
or AVX-512-BF16; elsewhere its row says why not), ``onnxruntime``, ``openvino`` (their exports
are made into the export cache first, if not there, and that time reported). A runtime that
cannot run here (an extra missing, no C++ compiler) gets a row saying why.

* **Speed**: the data engine's crowd scenes (``model.data.crowd.CrowdBuilder``) of 1 and of
  8 persons, each covering ``--person-fraction`` of the image, at the network's input size;
  the whole ``Predictor`` (preprocessing, forward pass, per-person post-processing) timed in
  interleaved rounds (``benchmarks.common.interleaved``: every runtime once per round, in a
  rotating order), medians over ``--repeats`` rounds after ``--warmup``.
* **Accuracy**: GPS AP and mask AP (``model.evaluation.report.evaluate_directory``) on the
  first ``--images`` images of the held-out set, and the change against ``torch``.
* **Start-up and memory**: for each runtime a fresh process runs the service's own start-up
  (``service.loading.load_predictor`` + ``warm_up``, the export cached) and reports its
  seconds and resident memory after it, and its peak.

``--record`` merges the result into the record beside the weights
(``model.runtimes.record``): the accuracy of each runtime, and the seconds per image (mean of
the two scenes' medians) on this CPU model. Only a run over the whole held-out set records.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    configure_torch,
    describe,
    environment,
    interleaved,
    markdown_table,
    medians,
    whole,
    write_outputs,
)
from model.checkpoint import file_sha256
from model.data.loader import DensePoseCocoDataset
from model.device import cpu_info
from model.evaluation.report import annotations_file, evaluate_directory
from model.export.bundle import MANIFEST_NAME, export_directory
from model.inference.predictor import Predictor
from model.paths import DEFAULT_WEIGHTS
from model.runtimes.choice import MAX_GPS_AP_LOSS, choose_runtime
from model.runtimes.names import REFERENCE_RUNTIME, RUNTIME_NAMES, RuntimeName
from model.runtimes.record import Accuracy, RuntimeRecord, Speed, read_record, record_path
from model.runtimes.selection import EXPORT_FORMATS, load_runtime, unavailable_runtimes
from model.training.recipe import calibration_set, held_out_set
from model.training.settings import DataSettings

MODULE = "benchmarks.cpu_paths"
PERSONS = (1, 8)


MIB = 2**20


# -- start-up, in a fresh process -----------------------------------------------------------


def startup_report(weights: Path, runtime: RuntimeName, threads: int) -> dict[str, float]:
    """The service's start-up with ``runtime`` in this process: seconds of
    ``load_predictor`` and of ``warm_up``, resident MiB after them and at the peak."""
    import psutil

    from service.loading import load_predictor, warm_up
    from service.settings import Settings

    settings = Settings(weights=weights, runtime=runtime, torch_threads=threads)
    start = time.perf_counter()
    predictor, _ = load_predictor(settings)
    loaded = time.perf_counter()
    warm_up(predictor)
    warm = time.perf_counter()
    return {
        "load_s": loaded - start,
        "warmup_s": warm - loaded,
        "startup_s": warm - start,
        "rss_mib": psutil.Process().memory_info().rss / MIB,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB,
    }


def measure_startup(weights: Path, runtime: RuntimeName, threads: int) -> dict[str, float]:
    """:func:`startup_report` of a fresh ``python -m benchmarks.cpu_paths --startup-of``."""
    command = [
        sys.executable, "-m", MODULE, "--startup-of", runtime, "--weights", str(weights),
        "--threads", str(threads),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    report: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


# -- speed and accuracy ---------------------------------------------------------------------


def crowd_scenes(height: int, width: int, *, person_fraction: float, seed: int) -> dict[int, Any]:
    """Persons -> a crowd scene of that many persons (``PERSONS``) at ``height`` x ``width``."""
    from model.data.crowd import CrowdBuilder
    from model.data.synth import load_renderer  # the body model: the data extra

    builder = CrowdBuilder(load_renderer(), height=height, width=width, seed=seed)
    return {persons: builder.build(persons, person_fraction) for persons in PERSONS}


def time_scenes(
    predictors: Mapping[str, Predictor],
    images: Mapping[int, np.ndarray],
    *,
    repeats: int,
    warmup: int,
) -> dict[str, dict[str, float]]:
    """Runtime -> persons (as text) -> median seconds per image, all runtimes and scenes
    interleaved."""
    cases = {
        f"{name}|{persons}": whole(partial(predictor, [image]))
        for persons, image in images.items()
        for name, predictor in predictors.items()
    }
    samples = interleaved(cases, repeats=repeats, warmup=warmup)
    seconds: dict[str, dict[str, float]] = {name: {} for name in predictors}
    for key, runs in samples.items():
        name, persons = key.split("|")
        seconds[name][persons] = medians(runs)["total"]
    return seconds


def found_persons(
    predictors: Mapping[str, Predictor], images: Mapping[int, np.ndarray]
) -> dict[str, dict[str, int]]:
    """Runtime -> persons in the scene (as text) -> persons the network found."""
    return {
        name: {str(n): len(predictor([image])[0]) for n, image in images.items()}
        for name, predictor in predictors.items()
    }


def score(predictor: Predictor, heldout: Path, images: int) -> dict[str, Any]:
    metrics = evaluate_directory(predictor, heldout, limit=images, progress=False)
    return {key: metrics[key] for key in ("gps_ap", "gps_ap50", "mask_ap", "seconds_per_image")}


def seconds_per_image(seconds: Mapping[str, float]) -> float:
    """What the record keeps of a runtime's speed: the mean over the scenes of the medians."""
    return statistics.mean(seconds.values())


def to_record(report: Mapping[str, Any]) -> RuntimeRecord:
    """The record of a finished report: accuracy of every scored runtime, speed of every
    timed runtime on this CPU."""
    env, network = report["environment"], report["network"]
    rows = report["runtimes"]
    return RuntimeRecord(
        weights_sha256=network["weights_sha256"],
        heldout=Path(report["settings"]["heldout"]).name,
        images=report["settings"]["images"],
        accuracy={
            name: Accuracy(gps_ap=row["accuracy"]["gps_ap"], mask_ap=row["accuracy"]["mask_ap"])
            for name, row in rows.items()
            if row.get("accuracy") and row["accuracy"]["gps_ap"] is not None
        },
        speeds=[
            Speed(
                cpu=env["cpu"],
                capability=env["cpu_capability"],
                threads=env["torch_threads"],
                date=env["date"][:10],
                seconds_per_image={
                    name: seconds_per_image(row["seconds"])
                    for name, row in rows.items()
                    if row.get("seconds")
                },
            )
        ],
    )


# -- report ---------------------------------------------------------------------------------


def _cell(value: float | None, form: str) -> str:
    return "-" if value is None else format(value, form)


def _delta(accuracy: Mapping[str, Any], base: Mapping[str, Any], key: str) -> str:
    if accuracy.get(key) is None or base.get(key) is None:
        return "-"
    return f"{accuracy[key] - base[key]:+.2f}"


def render_markdown(report: dict[str, Any]) -> str:
    settings, rows = report["settings"], report["runtimes"]
    reference = rows[REFERENCE_RUNTIME]
    headers = [
        "runtime", *(f"s / image, {n} person{'s' * (n > 1)}" for n in PERSONS), "x torch",
        "GPS AP", "Δ GPS AP", "mask AP", "Δ mask AP", "start-up s", "RSS MiB", "peak MiB",
        "export s",
    ]  # fmt: skip
    table = []
    for name, row in rows.items():
        if "unavailable" in row:
            table.append([f"`{name}`", f"not run: {row['unavailable']}", *[""] * 10])
            continue
        speed = seconds_per_image(row["seconds"])
        accuracy, base = row.get("accuracy") or {}, reference.get("accuracy") or {}
        startup = row.get("startup") or {}
        table.append([
            f"`{name}`", *(f"{row['seconds'][str(n)]:.3f}" for n in PERSONS),
            f"{seconds_per_image(reference['seconds']) / speed:.2f}",
            _cell(accuracy.get("gps_ap"), ".2f"), _delta(accuracy, base, "gps_ap"),
            _cell(accuracy.get("mask_ap"), ".2f"), _delta(accuracy, base, "mask_ap"),
            _cell(startup.get("startup_s"), ".1f"), _cell(startup.get("rss_mib"), ".0f"),
            _cell(startup.get("peak_rss_mib"), ".0f"), _cell(row.get("export_s"), ".0f"),
        ])  # fmt: skip
    choice = report["auto"]
    scenes = ", ".join(
        f"{n}: {report['scenes'][str(n)]['foreground_fraction'] * 100:.1f} % foreground, found "
        + "/".join(str(row["found"][str(n)]) for row in rows.values() if "found" in row)
        for n in PERSONS
    )
    return (
        "# CPU runtimes side by side\n\n"
        f"{describe(report['environment'])} CPU ISA {report['environment']['cpu_capability']}, "
        f"bf16 unit: {report['environment']['bf16_unit'] or 'none'}.\n\n"
        f"Network: `{report['network']['weights']}` (config `{report['network']['config']}`, "
        f"sha256 {report['network']['weights_sha256'][:12]}). Seconds per image: the whole "
        f"predictor on crowd scenes of {settings['image_size'][0]}x{settings['image_size'][1]}, "
        f"each person {100 * settings['person_fraction']:.0f} % of the image ({scenes}; persons "
        f"found per runtime in table order), {settings['repeats']} interleaved rounds after "
        f"{settings['warmup']}, medians; x torch: the mean of the two over torch's. Accuracy: "
        f"the first {settings['images']} images of `{Path(settings['heldout']).name}`, Δ "
        "against `torch`. Start-up: a fresh process's `load_predictor` + `warm_up` with the "
        "export cached (export s: the export itself, once, when it was not cached).\n\n"
        + markdown_table(headers, table)
        + f"\n**auto** on this CPU with this result (GPS AP loss ≤ {MAX_GPS_AP_LOSS}, every "
        f"export cached): `{choice['name']}`: {choice['reason']}.\n"
    )


def plot(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    rows = {name: row for name, row in report["runtimes"].items() if "seconds" in row}
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    speed_axes, accuracy_axes = figure.subplots(1, 2)
    names = list(rows)
    positions = np.arange(len(names))
    for offset, persons in zip((-0.2, 0.2), PERSONS, strict=True):
        speed_axes.bar(
            positions + offset, [rows[n]["seconds"][str(persons)] for n in names], width=0.4,
            label=f"{persons} person{'s' * (persons > 1)}",
        )  # fmt: skip
    speed_axes.set_xticks(positions, names, rotation=30, ha="right")
    speed_axes.set(ylabel="seconds per image", title="speed (median)")
    speed_axes.legend()
    scored = [n for n in names if (rows[n].get("accuracy") or {}).get("gps_ap") is not None]
    base = rows[REFERENCE_RUNTIME].get("accuracy") or {}
    for offset, key in zip((-0.2, 0.2), ("gps_ap", "mask_ap"), strict=True):
        accuracy_axes.bar(
            np.arange(len(scored)) + offset,
            [rows[n]["accuracy"][key] - (base.get(key) or 0.0) for n in scored], width=0.4,
            label=f"Δ {key.replace('_', ' ')}",
        )  # fmt: skip
    accuracy_axes.axhline(-MAX_GPS_AP_LOSS, color="red", linestyle="--", label="auto's limit")
    accuracy_axes.set_xticks(np.arange(len(scored)), scored, rotation=30, ha="right")
    accuracy_axes.set(ylabel="points against torch", title="accuracy change (held-out set)")
    accuracy_axes.legend()
    figure.savefig(path, dpi=110)


# -- command line ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="folder for <stem>.{json,md,png}")
    parser.add_argument("--stem", default="cpu_paths", help="file names of the report")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument(
        "--runtimes", nargs="+", choices=RUNTIME_NAMES, default=list(RUNTIME_NAMES),
        help=f"the runtimes to compare ({REFERENCE_RUNTIME} is always among them)",
    )  # fmt: skip
    parser.add_argument(
        "--heldout", type=Path, help="a rendered set (default: the recipe's, rendered if missing)"
    )
    parser.add_argument("--images", type=int, default=None, help="held-out images (default all)")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved timed rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--person-fraction", type=float, default=0.03, help="of the image, each")
    parser.add_argument("--seed", type=int, default=0, help="the scenes' persons and background")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up processes")
    parser.add_argument("--record", action="store_true", help="merge into the weights' record")
    parser.add_argument("--startup-of", choices=RUNTIME_NAMES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.startup_of is None and args.out is None:
        parser.error("--out is required")
    if args.images is not None and args.images < 1:
        parser.error(f"--images must be >= 1, got {args.images}")
    if not args.weights.is_file():
        parser.error(f"no weights at {args.weights}: the accuracy needs a trained network")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write cpu_paths.json, .md and .png (and the record with
    ``--record``); return the report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    configure_torch(args.threads)
    if args.startup_of is not None:
        print(json.dumps(startup_report(args.weights, args.startup_of, args.threads)))
        return {}
    env = environment(module=MODULE, argv=argv, threads=args.threads)
    env["bf16_unit"] = cpu_info().bf16_unit
    if args.heldout is None:
        args.heldout = held_out_set(DataSettings())
    if "onnxruntime-int8" in args.runtimes:
        calibration_set(DataSettings())  # what the int8 export calibrates on
    total_images = len(DensePoseCocoDataset(annotations_file(args.heldout)))
    images = total_images if args.images is None else min(args.images, total_images)
    if args.record and images < total_images:
        raise SystemExit(f"--record needs the whole held-out set ({total_images} images)")
    base = Predictor.from_checkpoint(args.weights, device="cpu")
    sha256 = file_sha256(args.weights)
    names = [REFERENCE_RUNTIME, *(n for n in args.runtimes if n != REFERENCE_RUNTIME)]
    unavailable = unavailable_runtimes(base, allow_export=True, allow_compile=True)
    rows: dict[str, dict[str, Any]] = {}
    predictors: dict[str, Predictor] = {}
    for name in names:
        if name in unavailable:
            rows[name] = {"unavailable": unavailable[name]}
            print(f"{name}: not run: {unavailable[name]}", flush=True)
            continue
        exported = name not in EXPORT_FORMATS or (
            export_directory(base.model, base.config, EXPORT_FORMATS[name]) / MANIFEST_NAME
        ).is_file()
        start = time.perf_counter()
        runtime = load_runtime(name, base)  # exports into the cache when not there
        rows[name] = {"description": runtime.description}
        if not exported:
            rows[name]["export_s"] = time.perf_counter() - start
        predictors[name] = dataclasses.replace(base, runtime=runtime)
    height, width = base.config.input.short_side, base.config.input.max_side
    scenes = crowd_scenes(height, width, person_fraction=args.person_fraction, seed=args.seed)
    scene_images = {n: crowd.image for n, crowd in scenes.items()}
    with torch.inference_mode():
        found = found_persons(predictors, scene_images)  # also the first call (compiles)
        print(f"scenes: persons found {found}", flush=True)
        seconds = time_scenes(predictors, scene_images, repeats=args.repeats, warmup=args.warmup)
    for name in predictors:
        rows[name] |= {"seconds": seconds[name], "found": found[name]}
        print(f"{name}: {seconds[name]} s per image", flush=True)
    for name, predictor in predictors.items():
        rows[name]["accuracy"] = score(predictor, args.heldout, images)
        print(f"{name}: {rows[name]['accuracy']}", flush=True)
    if not args.no_startup:
        for name in predictors:
            rows[name]["startup"] = measure_startup(args.weights, name, args.threads)  # type: ignore[arg-type]
            print(f"{name}: start-up {rows[name]['startup']}", flush=True)
    report: dict[str, Any] = {
        "environment": env,
        "network": {
            "weights": str(args.weights),
            "weights_sha256": sha256,
            "config": base.config.name,
        },
        "settings": {
            "image_size": [height, width],
            "person_fraction": args.person_fraction,
            "seed": args.seed,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "heldout": str(args.heldout),
            "images": images,
        },
        "scenes": {
            str(n): {"persons": crowd.persons, "foreground_fraction": crowd.foreground_fraction}
            for n, crowd in scenes.items()
        },
        "runtimes": rows,
    }
    record = to_record(report)
    choice = choose_runtime(record, weights_sha256=sha256, cpu=cpu_info(), unavailable={})
    report["auto"] = dataclasses.asdict(choice)
    write_outputs(args.out, args.stem, report, markdown=render_markdown, plot=plot)
    if args.record:
        existing = read_record(args.weights)
        merged = record if existing is None else existing.merged(record)
        merged.write(record_path(args.weights))
        print(f"recorded in {record_path(args.weights)}")
    return report


if __name__ == "__main__":
    main()
