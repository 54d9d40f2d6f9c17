"""Forward time of each config at its own input size, split by stage.

``python -m benchmarks.stages --out docs/benchmarks [--configs tiny default r50] [--repeats N]``

Batch 1, eval mode, ``torch.inference_mode``, 2 intra-op threads (``--threads``), random
weights (timing does not depend on their values; the ImageNet backbone weights are not read).
The stages are ``DDP.forward``'s, in its order:

* ``backbone_fpn``: ``model.backbone`` (P2..P5);
* ``aggregation``: ``model.aggregation`` (X_agg at 1/4);
* ``instance_branch``: FCOS heads, ``select_detections`` with the config's thresholds, the
  down-sample conv (X_D) and the dynamic mask head of the forced persons;
* ``iuv_branch``: ``model.foreground`` (M_fg) and the sparse IUV branch (backend ``auto``);
* ``postprocess``: ``model.inference.postprocess.to_results`` back to image pixels.

Forced persons: an untrained network detects nobody, which would make the mask head, the IUV
branch and post-processing nearly free. So after the real ``select_detections`` (timed, its
result dropped) the network is given ``--persons`` synthetic persons
(:func:`benchmarks.common.person_masks`: body ellipse + head each, union covering
``--fraction`` of X_agg): the dynamic mask head runs on the controller parameters of the
stride-8 FCOS location nearest each person's centroid; its logits are then replaced by
+-8 logits of the synthetic masks, which drive M_fg, IAN's regions and post-processing; the
boxes are the masks' bounding boxes, the scores 0.9. The input is one random image of exactly
short_side x max_side pixels, prepared (normalised, padded) once outside the timing.

How close to the machine's limit: each stage's FLOPs are counted once
(``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products, the sparse
branch's gather-GEMMs among them; element-wise work, gathers and NMS count nothing) and
divided by its median seconds, against a ``--matmul-size`` squared float32 matmul (the stages'
precision) timed in the same interleaved rounds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import (
    X_AGG_STRIDE,
    StageClock,
    configure_torch,
    describe,
    environment,
    interleaved,
    markdown_table,
    matmul_flops,
    medians,
    person_masks,
    whole,
    write_outputs,
)
from model.config import DDPConfig, InstanceConfig, get_config
from model.inference.postprocess import to_results
from model.inference.preprocess import PreparedBatch, prepare_batch
from model.network.ddp import DDP, build_ddp
from model.network.detection import select_detections
from model.structures import DDPOutput, Detections

MODULE = "benchmarks.stages"
STAGES = ("backbone_fpn", "aggregation", "instance_branch", "iuv_branch", "postprocess")
DEFAULT_REPEATS = {"tiny": 20, "default": 10, "r50": 5}
"""Timed runs per config (after one warm-up run) unless ``--repeats`` is given."""
MASK_LOGIT = 8.0
FORCED_SCORE = 0.9
MATMUL = "matmul"


class Laps(Protocol):
    """What :func:`forward_by_stage` marks the end of each stage on."""

    def lap(self, stage: str) -> None: ...


class FlopLaps:
    """``lap(name)`` books the FLOPs ``counter`` counted since the previous lap."""

    def __init__(self, counter: FlopCounterMode) -> None:
        self.counter = counter
        self.flops: dict[str, int] = {}
        self._last = 0

    def lap(self, stage: str) -> None:
        total = self.counter.get_total_flops()
        self.flops[stage] = self.flops.get(stage, 0) + total - self._last
        self._last = total


def stage_flops(run: Any) -> dict[str, int]:
    """FLOPs of each stage of one ``run(laps)``."""
    counter = FlopCounterMode(display=False)
    laps = FlopLaps(counter)
    with counter:
        run(laps)
    return laps.flops


@dataclass
class ForcedPersons:
    """Synthetic persons standing in for detections (module docstring).

    Attributes:
        masks: (N, h, w) bool at X_agg's scale (1/4 of the padded input).
        mask_logits: (N, 2, h, w) float32, +-8 from ``masks`` for M_ins and M_dp.
        boxes_xyxy: (N, 4) float32, the masks' bounding boxes in input pixels.
        scores: (N,) float32.
        image_index: (N,) int64, all 0 (batch 1).
        location_index: (N,) int64, FCOS locations whose controller output drives the
            dynamic mask head.
    """

    masks: Tensor
    mask_logits: Tensor
    boxes_xyxy: Tensor
    scores: Tensor
    image_index: Tensor
    location_index: Tensor

    @property
    def fraction(self) -> float:
        return float(self.masks.any(0).double().mean())


def bounding_boxes(masks: Tensor, scale: int) -> Tensor:
    """(N, h, w) bool, each non-empty -> (N, 4) float32 xyxy boxes of the masks x ``scale``."""
    boxes = []
    for mask in masks:
        ys, xs = mask.nonzero(as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return torch.tensor(boxes, dtype=torch.float32) * scale


def nearest_locations(
    locations: Tensor, location_strides: Tensor, points_xy: Tensor, stride: int
) -> Tensor:
    """(N,) index of the location of ``stride`` nearest each of the (N, 2) points."""
    candidates = (location_strides == stride).nonzero().squeeze(1)
    distances = torch.cdist(points_xy, locations[candidates])  # [N, L_stride]
    return candidates[distances.argmin(1)]


def force_persons(
    model: DDP, batch: PreparedBatch, *, persons: int, fraction: float
) -> ForcedPersons:
    height, width = (size // X_AGG_STRIDE for size in batch.images.shape[-2:])
    masks = person_masks(height, width, persons=persons, fraction=fraction)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    area = masks.sum((1, 2))
    centroids = torch.stack(
        [(masks * xs).sum((1, 2)) / area, (masks * ys).sum((1, 2)) / area], dim=1
    )
    centroids_xy = (centroids.float() + 0.5) * X_AGG_STRIDE  # input pixels
    head = model.instance_branch.heads(model.backbone(batch.images))
    logit = torch.where(masks, MASK_LOGIT, -MASK_LOGIT)
    return ForcedPersons(
        masks=masks,
        mask_logits=torch.stack([logit, logit], dim=1),
        boxes_xyxy=bounding_boxes(masks, X_AGG_STRIDE),
        scores=torch.full((persons,), FORCED_SCORE),
        image_index=torch.zeros(persons, dtype=torch.int64),
        location_index=nearest_locations(
            head.locations, head.location_strides, centroids_xy, stride=8
        ),
    )


def forward_by_stage(
    model: DDP, batch: PreparedBatch, persons: ForcedPersons, instance: InstanceConfig,
    clock: Laps,
) -> int:
    """One forward pass + post-processing, a lap per stage; the number of persons that
    ``select_detections`` found on its own."""
    pyramid = model.backbone(batch.images)
    clock.lap("backbone_fpn")
    x_agg = model.aggregation(pyramid)
    clock.lap("aggregation")
    branch = model.instance_branch
    head = branch.heads(pyramid)
    found = select_detections(
        head, batch.image_sizes, candidate_score_threshold=instance.candidate_score_threshold,
        pre_nms_top_k=instance.pre_nms_top_k, nms_iou_threshold=instance.nms_iou_threshold,
        max_detections=instance.max_detections, score_threshold=instance.detection_score_threshold,
    )
    index = persons.location_index
    branch.masks(
        branch.mask_features(x_agg), head.controller[0, index], head.locations[index],
        head.location_strides[index], persons.image_index,
    )  # [N, 2, h, w], replaced by the forced persons' logits
    clock.lap("instance_branch")
    active = model.foreground(persons.masks, persons.image_index, batch.images.shape[0])
    iuv_logits = model.iuv_branch(x_agg, active, persons.masks, persons.image_index)
    clock.lap("iuv_branch")
    detections = Detections(
        image_index=persons.image_index, boxes_xyxy=persons.boxes_xyxy, scores=persons.scores,
        mask_logits=persons.mask_logits,
    )
    output = DDPOutput(
        detections=detections, iuv_logits=iuv_logits, active=active,
        image_sizes=batch.image_sizes,
    )
    to_results(output, batch, mask_threshold=instance.mask_threshold)
    clock.lap("postprocess")
    return len(found.scores)


def benchmark_config(
    config: DDPConfig, *, repeats: int, persons: int, fraction: float,
    matmul: tuple[Tensor, Tensor],
) -> dict[str, Any]:
    model = build_ddp(config, load_pretrained=False).eval()
    height, width = config.input.short_side, config.input.max_side
    batch = prepare_batch([torch.rand(3, height, width)], config.input)
    forced = force_persons(model, batch, persons=persons, fraction=fraction)
    run = partial(forward_by_stage, model, batch, forced, config.instance)
    found = run(StageClock())  # also the warm-up run
    flops = stage_flops(run)
    cases = {config.name: run, MATMUL: whole(lambda: torch.mm(*matmul))}
    both = interleaved(cases, repeats=repeats, warmup=0)
    samples = both[config.name]
    median = medians(samples)
    matmul_gflops = matmul_flops(matmul) / medians(both[MATMUL])["total"] / 1e9
    gflops = {stage: flops.get(stage, 0) / median[stage] / 1e9 for stage in STAGES}
    totals = [sum(sample.values()) for sample in samples]
    stage_sum = sum(median[stage] for stage in STAGES)
    return {
        "config": config.name,
        "image_size": [height, width],
        "padded_size": list(batch.images.shape[-2:]),
        "x_agg_size": list(forced.masks.shape[-2:]),
        "forced_persons": persons,
        "foreground_fraction": forced.fraction,
        "active_sites": int(forced.masks.any(0).sum()),
        "found_by_untrained_net": found,
        "repeats": repeats,
        "median_s": median,
        "share": {stage: median[stage] / stage_sum for stage in STAGES},
        "total_min_s": min(totals),
        "total_max_s": max(totals),
        "gflop": {stage: flops.get(stage, 0) / 1e9 for stage in STAGES},
        "gflops": gflops,
        "matmul_gflops": matmul_gflops,
        "of_matmul": {stage: gflops[stage] / matmul_gflops for stage in STAGES},
    }


def render_markdown(report: dict[str, Any]) -> str:
    headers = ["stage", *(f"{r['config']} s" for r in report["results"])]
    headers += [f"{r['config']} %" for r in report["results"]]
    rows = []
    for stage in (*STAGES, "total"):
        seconds = [f"{r['median_s'][stage]:.4f}" for r in report["results"]]
        shares = [
            f"{100 * r['share'][stage]:.1f}" if stage in STAGES else "100"
            for r in report["results"]
        ]
        rows.append([stage, *seconds, *shares])
    inputs = ", ".join(
        f"{r['config']} {r['image_size'][0]}x{r['image_size'][1]} (padded "
        f"{r['padded_size'][0]}x{r['padded_size'][1]}), {r['forced_persons']} persons on "
        f"{100 * r['foreground_fraction']:.1f} % = {r['active_sites']} sites, "
        f"{r['repeats']} runs (total {r['total_min_s']:.3f}-{r['total_max_s']:.3f} s)"
        for r in report["results"]
    )
    return (
        f"# Forward time by stage\n\n{describe(report['environment'])}\n\n"
        "Median seconds per stage (batch 1, inference mode) and share of the sum of the "
        f"stage medians. Inputs: {inputs}. Persons are forced, see "
        "`benchmarks/stages.py`.\n\n" + markdown_table(headers, rows) + _limit_markdown(report)
    )


def _limit_markdown(report: dict[str, Any]) -> str:
    """Achieved GFLOP/s of each stage and its share of the matmul's, per config."""
    results = report["results"]
    headers = ["stage", *(f"{r['config']} GFLOP" for r in results)]
    headers += [f"{r['config']} GFLOP/s (% of matmul)" for r in results]
    rows = []
    for stage in STAGES:
        rows.append([
            stage, *(f"{r['gflop'][stage]:.2f}" for r in results),
            *(f"{r['gflops'][stage]:.1f} ({100 * r['of_matmul'][stage]:.0f} %)" for r in results),
        ])  # fmt: skip
    matmuls = ", ".join(f"{r['config']} {r['matmul_gflops']:.1f}" for r in results)
    return (
        "\n## How close to the limit\n\n"
        "FLOPs per stage from `torch.utils.flop_counter.FlopCounterMode` (convolutions and "
        "matrix products only: element-wise work, gathers, NMS and post-processing count "
        "nothing, so those stages read low), over the stage's median seconds, against a "
        f"{report['matmul_size']}² float32 matmul timed in the same interleaved rounds "
        f"(GFLOP/s: {matmuls}).\n\n" + markdown_table(headers, rows)
    )


def plot(report: dict[str, Any], path: Path) -> None:
    results = report["results"]
    names = [r["config"] for r in results]
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    seconds_axes, share_axes = figure.subplots(1, 2)
    bottoms = [0.0] * len(results)
    share_bottoms = [0.0] * len(results)
    for stage in STAGES:
        values = [r["median_s"][stage] for r in results]
        shares = [100 * r["share"][stage] for r in results]
        seconds_axes.bar(names, values, bottom=bottoms, label=stage)
        share_axes.bar(names, shares, bottom=share_bottoms, label=stage)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        share_bottoms = [b + v for b, v in zip(share_bottoms, shares, strict=True)]
    for name, total in zip(names, bottoms, strict=True):
        seconds_axes.annotate(f"{total:.3f} s", (name, total), ha="center", va="bottom")
    seconds_axes.set_ylabel("stage medians, stacked (s, batch 1)")
    seconds_axes.set_title("forward time by stage")
    share_axes.set_ylabel("% of the stage sum")
    share_axes.set_title("share of each stage")
    share_axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.savefig(path, dpi=120)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for stages.{json,md,png}")
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_REPEATS))
    parser.add_argument(
        "--repeats", type=int, default=None,
        help=f"timed runs per config (default per config: {DEFAULT_REPEATS}, otherwise 5)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--persons", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.25, help="foreground of X_agg")
    parser.add_argument(
        "--matmul-size", type=int, default=2048, help="the reference float32 matmul's side"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write stages.json, stages.md and stages.png; return the report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    configure_torch(args.threads)
    env = environment(module=MODULE, argv=argv, threads=args.threads)
    results = []
    matmul = (torch.randn(args.matmul_size, args.matmul_size),) * 2
    with torch.inference_mode():
        for name in args.configs:
            repeats = args.repeats or DEFAULT_REPEATS.get(name, 5)
            config = get_config(name)
            print(f"{name}: {repeats} runs at {config.input.short_side}x{config.input.max_side}")
            results.append(benchmark_config(
                config, repeats=repeats, persons=args.persons, fraction=args.fraction,
                matmul=matmul,
            ))
    report = {
        "environment": env, "stages": list(STAGES), "matmul_size": args.matmul_size,
        "results": results,
    }  # fmt: skip
    write_outputs(args.out, "stages", report, markdown=render_markdown, plot=plot)
    return report


if __name__ == "__main__":
    main()
