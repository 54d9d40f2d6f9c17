"""Seconds per image vs persons per image: DDP (sparse and dense IUV branch) vs a top-down
reference, the measurement of paper Fig. 4.

``python -m benchmarks.persons --out docs/benchmarks``

Methods, timed side by side on the same images (``benchmarks.common.interleaved``: each
round runs every method once, in a rotating order; medians over ``--repeats`` rounds):

* ``ddp_sparse``: the trained default network (``--weights``), ``Predictor.__call__``'s two
  steps (``forward``: preprocessing + ``DDP.forward``, and ``postprocess``) timed apart; the
  IUV branch's own time is read from forward hooks and reported out of ``forward``;
* ``ddp_dense``: the same weights with the IUV branch on the ``dense`` sparse-conv backend
  (the same submanifold convolution computed over the whole map; identical results);
* ``topdown``: ``benchmarks.topdown`` (DensePose R-CNN's heads on DDP's backbone, random
  weights) given the persons' true boxes; its stages from forward hooks, the rest
  (preprocessing, paste) as ``preprocess_paste``.

Without the weights file the run falls back to a random ``--untrained`` network (default
``default``) and says so loudly: such a network detects nobody, so its DDP times do not grow
with N and mean nothing for this comparison.

Images: the data engine's crowd scenes (``model.data.crowd.CrowdBuilder``) at one size (the
network's input size unless ``--image-size``): N persons on a grid, one per cell, each at a
target visible area, the same persons and background for every N. Two series:

* ``constant_foreground`` (a): the persons' areas add up to ``--foreground`` of the image:
  people shrink as N grows, which isolates the per-person cost;
* ``constant_size`` (b): each person covers ``--person-fraction``: the foreground grows
  with N.

For each point the report gives the rendered foreground, how many persons DDP found (those
scoring at least its config's ``detection_score_threshold``), the share of X_agg its sparse
IUV branch computed on (M_fg), and per method the median seconds by stage, their total, and
the ratio to the smallest N.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from benchmarks.common import (
    Case,
    Seconds,
    StageClock,
    configure_torch,
    describe,
    environment,
    image_size,
    interleaved,
    markdown_table,
    medians,
    write_outputs,
    x_agg_size,
)
from benchmarks.topdown import TopDownConfig, TopDownPredictor, build_topdown
from model.checkpoint import file_sha256
from model.config import CONFIGS, get_config
from model.data.crowd import Crowd, CrowdBuilder
from model.inference.predictor import Predictor
from model.network.ddp import use_sparse_backend
from model.network.sparse import resolve_backend
from model.paths import DEFAULT_WEIGHTS

MODULE = "benchmarks.persons"
SERIES = {
    "constant_foreground": "(a) constant total foreground: persons shrink as N grows",
    "constant_size": "(b) constant person size: the foreground grows with N",
}
METHODS = ("ddp_sparse", "ddp_dense", "topdown")
STAGES = {
    "ddp_sparse": ("forward", "iuv_branch", "postprocess"),
    "ddp_dense": ("forward", "iuv_branch", "postprocess"),
    "topdown": ("backbone_fpn", "box_stage", "mask_head", "densepose_head", "preprocess_paste"),
}
"""Stages of each method; DDP's ``forward`` is without the IUV branch."""
EXPECTED_RATIO = 1.3
"""Expectation for series (a): DDP sparse at the largest N within this factor of the smallest."""


def person_fraction(series: str, persons: int, *, foreground: float, person: float) -> float:
    """Target visible area of each person in a scene of ``series``, as a fraction of the image."""
    if series == "constant_foreground":
        return foreground / max(persons, 1)
    if series == "constant_size":
        return person
    raise ValueError(f"unknown series {series!r}; choose one of {list(SERIES)}")


def scene_summary(crowd: Crowd) -> dict[str, Any]:
    """What the report says of one scene: its persons, foreground and person sizes."""
    heights = crowd.boxes_xyxy[:, 3] - crowd.boxes_xyxy[:, 1]
    return {
        "persons": crowd.persons,
        "foreground_fraction": crowd.foreground_fraction,
        "target_person_fraction": crowd.target_fraction,
        "person_fraction": _spread(crowd.person_fractions),
        "person_height_px": _spread(heights),
        "shrunk_to_fit": int(crowd.shrunk.sum()),
    }


def _spread(values: np.ndarray) -> dict[str, float] | None:
    if len(values) == 0:
        return None
    return {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}


# -- timing ---------------------------------------------------------------------------------


class ModuleTimer:
    """Wall-clock seconds spent inside the forward calls of named modules (forward hooks)."""

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        self._seconds = dict.fromkeys(modules, 0.0)
        self._started: dict[str, float] = {}
        for name, module in modules.items():
            module.register_forward_pre_hook(partial(self._start, name))
            module.register_forward_hook(partial(self._stop, name))

    def _start(self, name: str, module: nn.Module, args: object) -> None:
        self._started[name] = time.perf_counter()

    def _stop(self, name: str, module: nn.Module, args: object, output: object) -> None:
        self._seconds[name] += time.perf_counter() - self._started.pop(name)

    def take(self) -> Seconds:
        """The seconds since the last ``take``, per module."""
        taken = dict(self._seconds)
        self._seconds = dict.fromkeys(taken, 0.0)
        return taken


def carve(clock: StageClock, stage: str, timer: ModuleTimer) -> None:
    """Move the timer's module seconds out of the clock's ``stage`` into their own stages."""
    for name, seconds in timer.take().items():
        clock.seconds[stage] -= seconds
        clock.seconds[name] = clock.seconds.get(name, 0.0) + seconds


def ddp_case(predictor: Predictor, backend: str, image: np.ndarray, timer: ModuleTimer) -> Case:
    def run(clock: StageClock) -> None:
        use_sparse_backend(predictor.model, backend)
        timer.take()
        output, batch = predictor.forward([image])
        clock.lap("forward")
        carve(clock, "forward", timer)
        predictor.postprocess(output, batch)
        clock.lap("postprocess")

    return run


def topdown_case(
    predictor: TopDownPredictor, image: np.ndarray, boxes: Tensor, timer: ModuleTimer
) -> Case:
    def run(clock: StageClock) -> None:
        timer.take()
        predictor([image], [boxes])
        clock.lap("preprocess_paste")
        carve(clock, "preprocess_paste", timer)

    return run


def ddp_view(predictor: Predictor, image: np.ndarray) -> dict[str, Any]:
    """What DDP makes of one image: persons found (the network keeps those scoring at least
    its ``detection_score_threshold``), and the share and number of X_agg cells of the image
    its sparse IUV branch computed on."""
    output, batch = predictor.forward([image])
    result = predictor.postprocess(output, batch)[0]
    height, width = x_agg_size(*(int(size) for size in batch.image_sizes[0]))
    active = output.active[0, :height, :width]
    return {
        "detected": len(result),
        "sparse_fraction": float(active.float().mean()),
        "sparse_sites": int(active.sum()),
        "x_agg_cells": height * width,
    }


@dataclass(frozen=True)
class Bench:
    """What every point is timed with."""

    predictor: Predictor
    topdown: TopDownPredictor
    sparse_backend: str
    repeats: int
    warmup: int
    ddp_timer: ModuleTimer
    topdown_timer: ModuleTimer


def measure_point(bench: Bench, crowd: Crowd) -> dict[str, Any]:
    image = crowd.image
    boxes = torch.from_numpy(crowd.boxes_xyxy)
    with torch.inference_mode():
        use_sparse_backend(bench.predictor.model, bench.sparse_backend)
        view = ddp_view(bench.predictor, image)
    cases = {
        "ddp_sparse": ddp_case(bench.predictor, bench.sparse_backend, image, bench.ddp_timer),
        "ddp_dense": ddp_case(bench.predictor, "dense", image, bench.ddp_timer),
        "topdown": topdown_case(bench.topdown, image, boxes, bench.topdown_timer),
    }
    samples = interleaved(cases, repeats=bench.repeats, warmup=bench.warmup)
    totals = {name: [sum(run.values()) for run in runs] for name, runs in samples.items()}
    return {
        "scene": scene_summary(crowd),
        "ddp": view,
        "median_s": {name: medians(runs) for name, runs in samples.items()},
        "total_range_s": {name: [min(t), max(t)] for name, t in totals.items()},
    }


def ratios(points: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Per method, each point's median total over the first point's."""
    first = points[0]["median_s"]
    return {
        name: [p["median_s"][name]["total"] / first[name]["total"] for p in points]
        for name in METHODS
    }


def verdict(series: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Series (a): does DDP sparse stay within ``EXPECTED_RATIO`` from the smallest to the
    largest N, and how much does the top-down reference grow; series (b): all ratios, and how
    much of DDP sparse's growth is its IUV branch, next to the growth of M_fg."""
    out: dict[str, Any] = {}
    a = series.get("constant_foreground")
    if a is not None:
        last = {name: values[-1] for name, values in a["ratios"].items()}
        out["constant_foreground"] = {
            "persons": [a["points"][0]["scene"]["persons"], a["points"][-1]["scene"]["persons"]],
            "ratios": last,
            "expected_ddp_sparse_at_most": EXPECTED_RATIO,
            "holds": last["ddp_sparse"] <= EXPECTED_RATIO,
        }
    b = series.get("constant_size")
    if b is not None:
        first, last_point = b["points"][0], b["points"][-1]

        def growth(method: str, stage: str) -> float:
            return float(last_point["median_s"][method][stage] - first["median_s"][method][stage])

        sites = [max(p["ddp"]["sparse_sites"], 1) for p in (first, last_point)]
        out["constant_size"] = {
            "persons": [first["scene"]["persons"], last_point["scene"]["persons"]],
            "ratios": {name: values[-1] for name, values in b["ratios"].items()},
            "sparse_sites_ratio": sites[1] / sites[0],
            "ddp_sparse_growth_s": {
                stage: growth("ddp_sparse", stage) for stage in (*STAGES["ddp_sparse"], "total")
            },
            "ddp_dense_iuv_growth_s": growth("ddp_dense", "iuv_branch"),
        }
    return out


# -- report ---------------------------------------------------------------------------------


def render_markdown(report: dict[str, Any]) -> str:
    network = report["network"]
    if network["untrained"]:
        missing = network["weights_missing"]
        why = f"no weights at `{missing}`" if missing else "`--untrained`"
        net = (
            f"**WARNING: a randomly initialised `{network['untrained']}` network** ({why}): it "
            "detects nobody, so DDP's times below do not grow with N and say nothing about "
            "Fig. 4. Re-run with the trained weights."
        )
    else:
        net = f"Network: `{network['weights']}` (config `{network['config']}`)."
    settings = report["settings"]
    sections = [
        "# Seconds per image vs persons per image (paper Fig. 4)\n",
        describe(report["environment"]) + "\n",
        net + "\n",
        f"Images {settings['image_size'][0]}x{settings['image_size'][1]}, batch 1, "
        f"{settings['repeats']} interleaved rounds after {settings['warmup']} warm-up "
        "round(s), medians. DDP sparse: IUV backend "
        f"`{network['sparse_backend']}`; DDP dense: backend `dense`, same weights; top-down: "
        "`benchmarks/topdown.py`, random weights, the persons' true boxes. Detected: DDP's "
        f"persons with score >= {settings['detection_score']} (the network's threshold). "
        "Sparse fg: the share of X_agg cells the IUV branch computed on. xN: total over the "
        "first row's.\n",
    ]
    for name, data in report["series"].items():
        rows = []
        for point, *scaled in zip(data["points"], *data["ratios"].values(), strict=True):
            scene, ddp, median = point["scene"], point["ddp"], point["median_s"]
            heights = scene["person_height_px"]
            rows.append([
                str(scene["persons"]), str(ddp["detected"]),
                f"{heights['mean']:.0f}" if heights else "-",
                f"{100 * scene['foreground_fraction']:.1f}",
                f"{100 * ddp['sparse_fraction']:.1f}",
                *(f"{median[m]['total']:.3f}" for m in METHODS),
                *(f"{r:.2f}" for r in scaled),
                f"{median['ddp_sparse']['iuv_branch']:.4f}",
                f"{median['ddp_dense']['iuv_branch']:.4f}",
                f"{median['topdown']['densepose_head'] + median['topdown']['mask_head']:.3f}",
            ])  # fmt: skip
        headers = [
            "N", "detected", "height px", "scene fg %", "sparse fg %",
            *(f"{m} s" for m in METHODS), *(f"{m} xN" for m in METHODS),
            "sparse IUV s", "dense IUV s", "top-down heads s",
        ]  # fmt: skip
        sections.append(f"## {SERIES[name]}\n\n{markdown_table(headers, rows)}")
    sections.append(_verdict_text(report["verdict"]))
    sections.append(_topdown_text(settings["topdown"]))
    return "\n".join(sections)


def _verdict_text(result: Mapping[str, Any]) -> str:
    lines = ["## Verdict\n"]
    a = result.get("constant_foreground")
    if a is not None:
        low, high = a["persons"]
        r = a["ratios"]
        lines.append(
            f"* (a) constant foreground, {low} -> {high} persons: DDP sparse x"
            f"{r['ddp_sparse']:.2f} (expected <= {a['expected_ddp_sparse_at_most']}: "
            f"**{'holds' if a['holds'] else 'fails'}**), DDP dense x{r['ddp_dense']:.2f}, "
            f"top-down x{r['topdown']:.2f}."
        )
    b = result.get("constant_size")
    if b is not None:
        low, high = b["persons"]
        r, g = b["ratios"], b["ddp_sparse_growth_s"]
        lines.append(
            f"* (b) constant person size, {low} -> {high} persons: DDP sparse "
            f"x{r['ddp_sparse']:.2f}, DDP dense x{r['ddp_dense']:.2f}, top-down "
            f"x{r['topdown']:.2f}. M_fg grew x{b['sparse_sites_ratio']:.1f} in sites; DDP "
            f"sparse grew {g['total']:+.4f} s: IUV branch {g['iuv_branch']:+.4f} s, rest of "
            f"forward {g['forward']:+.4f} s, post-processing {g['postprocess']:+.4f} s (dense "
            f"backend's IUV branch: {b['ddp_dense_iuv_growth_s']:+.4f} s)."
        )
    return "\n".join(lines) + "\n"


def _topdown_text(sizes: Mapping[str, int]) -> str:
    dp, mask = sizes["densepose_pool"], sizes["mask_pool"]
    return (
        "## Top-down reference (exact sizes)\n\n"
        f"DDP's backbone + FPN; box stage: RPN on P2-P6, {sizes['rpn_pre_nms_top_k']} "
        f"proposals per level before NMS, {sizes['proposals']} after; box head RoIAlign "
        f"{sizes['box_pool']}x{sizes['box_pool']}, 2 FC {sizes['box_fc']}, at most "
        f"{sizes['detections']} detections (computed and dropped: the heads get the true "
        f"boxes); mask head RoIAlign {mask}x{mask}, {sizes['mask_convs']} conv 3x3 "
        f"{sizes['mask_channels']} + deconv -> 1x{2 * mask}x{2 * mask}; DensePose head "
        f"RoIAlign {dp}x{dp}, {sizes['densepose_convs']} conv 3x3 "
        f"{sizes['densepose_channels']} + deconv -> 77x{2 * dp}x{2 * dp}, bilinear "
        f"x{sizes['densepose_upscale']} -> 77x{2 * dp * sizes['densepose_upscale']}"
        f"x{2 * dp * sizes['densepose_upscale']}; paste: masks into the image, IUV into each "
        "box.\n"
    )


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = report["series"]
    figure, axes = plt.subplots(1, len(series), figsize=(6 * len(series), 4.2), squeeze=False)
    labels = {"ddp_sparse": "DDP (sparse IUV)", "ddp_dense": "DDP (dense IUV)",
              "topdown": "top-down reference"}  # fmt: skip
    for ax, (name, data) in zip(axes[0], series.items(), strict=True):
        persons = [p["scene"]["persons"] for p in data["points"]]
        for method in METHODS:
            seconds = [p["median_s"][method]["total"] for p in data["points"]]
            ax.plot(persons, seconds, marker="o", label=labels[method])
            ax.annotate(f"x{data['ratios'][method][-1]:.2f}", (persons[-1], seconds[-1]),
                        textcoords="offset points", xytext=(4, 0), fontsize=8)  # fmt: skip
        ax.set(xscale="log", xlabel="persons per image", ylabel="seconds per image",
               title=SERIES[name], ylim=(0, None))  # fmt: skip
        ax.set_xticks(persons, [str(n) for n in persons])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if report["network"]["untrained"]:
        figure.suptitle("UNTRAINED network: DDP finds nobody (not a Fig. 4 result)", color="red")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- command line ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for persons.{json,md,png}")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument(
        "--untrained", metavar="CONFIG", choices=sorted(CONFIGS),
        help="time a random network of this config (also the fallback, 'default', when the "
        "weights are missing; such a network detects nobody)",
    )  # fmt: skip
    parser.add_argument("--persons", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--series", nargs="+", choices=list(SERIES), default=list(SERIES))
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timed rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--image-size", type=partial(image_size, minimum=32), help="HxW (default: the network's)"
    )
    parser.add_argument("--foreground", type=float, default=0.08, help="series (a): total")
    parser.add_argument("--person-fraction", type=float, default=0.01, help="series (b): each")
    parser.add_argument(
        "--topdown-pool", type=int, default=TopDownConfig().densepose_pool,
        help="DensePose RoIAlign size",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="persons and background")
    args = parser.parse_args(argv)
    if min(args.persons) < 1 or args.persons != sorted(set(args.persons)):
        parser.error(f"--persons must be increasing and >= 1, got {args.persons}")
    return args


def load_predictor(args: argparse.Namespace) -> tuple[Predictor, dict[str, Any]]:
    """The trained network, or (loudly) a random one; and how the report names it."""
    if args.untrained is None and args.weights.is_file():
        predictor = Predictor.from_checkpoint(args.weights, device="cpu")
        sha256 = file_sha256(args.weights)
        return predictor, {"weights": str(args.weights), "sha256": sha256, "untrained": None}
    name = args.untrained or "default"
    missing = None if args.untrained else str(args.weights)
    reason = f"no weights at {args.weights}" if missing else "--untrained"
    print(
        f"\n{'!' * 78}\nWARNING ({reason}): timing a RANDOMLY INITIALISED {name!r} network.\n"
        "It detects nobody: DDP's times will not grow with N, and the report is not a Fig. 4 "
        f"result.\n{'!' * 78}\n",
        file=sys.stderr,
    )
    return Predictor.untrained(get_config(name), device="cpu"), {
        "weights": None, "untrained": name, "weights_missing": missing,
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write persons.json, persons.md and persons.png; return the report."""
    from model.data.synth import load_renderer  # the body model: the data extra

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    configure_torch(args.threads)
    env = environment(module=MODULE, argv=argv, threads=args.threads)
    predictor, network = load_predictor(args)
    config = predictor.config
    height, width = args.image_size or (config.input.short_side, config.input.max_side)
    sizes = TopDownConfig(densepose_pool=args.topdown_pool)
    topdown = TopDownPredictor(
        build_topdown(config, sizes), config.input, mask_threshold=config.instance.mask_threshold
    )
    model = predictor.model
    bench = Bench(
        predictor=predictor,
        topdown=topdown,
        sparse_backend=resolve_backend(config.iuv.sparse_backend, predictor.device),
        repeats=args.repeats,
        warmup=args.warmup,
        ddp_timer=ModuleTimer({"iuv_branch": model.iuv_branch}),
        topdown_timer=ModuleTimer({
            "backbone_fpn": topdown.model.backbone, "box_stage": topdown.model.box_stage,
            "mask_head": topdown.model.mask_head, "densepose_head": topdown.model.densepose_head,
        }),
    )  # fmt: skip
    network |= {"config": config.name, "sparse_backend": bench.sparse_backend}
    builder = CrowdBuilder(load_renderer(), height=height, width=width, seed=args.seed)
    series: dict[str, Any] = {}
    for name in args.series:
        points = []
        for persons in args.persons:
            fraction = person_fraction(
                name, persons, foreground=args.foreground, person=args.person_fraction
            )
            points.append(measure_point(bench, builder.build(persons, fraction)))
            print(_progress(name, points[-1]), flush=True)
        series[name] = {"points": points, "ratios": ratios(points)}
    report = {
        "environment": env,
        "versions": {
            name: importlib.metadata.version(name) for name in ("torchvision", "timm", "numpy")
        },
        "network": network,
        "settings": {
            "image_size": [height, width],
            "persons": args.persons,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "foreground": args.foreground,
            "person_fraction": args.person_fraction,
            "seed": args.seed,
            "detection_score": config.instance.detection_score_threshold,
            "topdown": dataclasses.asdict(sizes),
        },
        "methods": list(METHODS),
        "stages": STAGES,
        "series": series,
        "verdict": verdict(series),
    }
    write_outputs(args.out, "persons", report, markdown=render_markdown, plot=plot)
    return report


def _progress(series: str, point: Mapping[str, Any]) -> str:
    times = ", ".join(f"{m} {point['median_s'][m]['total']:.3f} s" for m in METHODS)
    return (
        f"{series} N={point['scene']['persons']}: {times} (detected {point['ddp']['detected']}, "
        f"scene fg {100 * point['scene']['foreground_fraction']:.1f} %)"
    )


if __name__ == "__main__":
    main()
