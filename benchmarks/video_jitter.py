"""Temporal smoothing on synthetic clips with exact labels: accuracy, jitter and speed, off vs on.

``python -m benchmarks.video_jitter --out docs/benchmarks [--data data/clips] [--weights W]``

Clips come from the data engine (``ddp synth --clips N --frames F``; rendered into ``--data``
first when that folder has no ``annotations.json``), one clip = the frames sharing a
``vid_id``, each with its dense label maps. Each clip runs through ``model.video.iter_video``
with smoothing off and on (``--flow``, r = ``--radius``, the paper's weights), the two variants
alternating which goes first. Per variant, over all frames (the merged maps of
``model.outputs.encoding.paste_parts_uv``, the rule the NPZ and videos use):

* ``part_accuracy``: fraction of ground-truth person pixels whose predicted chart I is right;
* ``uv_error``: mean |U - U_gt| + |V - V_gt| over 2 where the chart is right;
* ``uv_jitter``: between consecutive frames, mean |ΔUV_pred - ΔUV_gt| (L2) over pixels whose
  ground truth keeps its chart and whose prediction is right in both frames: the change the
  network adds on top of the true motion;
* ``part_flips``: fraction of pixels whose ground-truth chart stays the same between two
  frames where the predicted chart changes, the sum of ``part_flips_painting`` (the pixel is
  painted as a person in one frame and not in the other: a person found in one frame and
  missed in the next, or a mask edge) and ``part_flips_chart`` (painted in both, another chart);
* ``uv_jitter_surface`` and ``part_flips_surface``: the same, following each surface point
  of the body instead of staying at one pixel. Pixel p of frame t is paired with the pixel q
  of frame t-1 that shows the same point (same person and chart, nearest (U, V):
  ``benchmarks.oracle_flow.surface_flow``); flips: the predicted chart at p differs from the
  one at q; jitter: mean |(UV_pred(p) - UV_pred(q)) - (UV_gt(p) - UV_gt(q))| where both are
  right. An error that rides with the body (a stable but shifted part boundary, a stable UV
  bias) moves across a fixed pixel as the person moves, so the fixed-pixel metrics count it
  as jitter; these do not, they count only what changes on the body: the flicker a viewer
  sees;
* ``pred_delta_uv``: mean |ΔUV_pred| (L2) where both predicted frames have the same chart
  (no ground truth involved);
* ``painted``: fraction of the frame the prediction paints as a person; ``painted_change``
  (``gt_painted_change``): fraction of pixels painted in one of two consecutive frames and not
  the other, in the prediction (the ground truth);
* the paper's Table 4: ITF (mean inter-frame PSNR) and ISI (mean inter-frame SSIM) of the
  visualisation videos (part colours + isocontours over the frame; viridis chart map; and
  as references the ground-truth chart map, alone and where the prediction paints, see
  ``VIDEOS``), on the rendered frames before H.264 encoding (``model.video.stability``);
* seconds per frame: the sum of ``iter_video``'s stages (network, flow, smoothing,
  post-processing, tracking), and each stage.

``--untrained CONFIG`` runs a random network with detection thresholds at 0 and 3 persons per
frame (``model.checkpoint.random_checkpoint``; plumbing and timing only: its numbers say nothing
about smoothing's benefit). Unless given, the smoothing settings are ``VideoOptions``' and the
rendered clips' size the data engine's (``SceneConfig``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from benchmarks.common import configure_torch, describe, environment, markdown_table, write_outputs
from benchmarks.oracle_flow import OracleFlow, surface_flow
from model.checkpoint import random_checkpoint
from model.config import get_config
from model.data.loader import DensePoseCocoDataset
from model.data.scene import SceneConfig
from model.inference.predictor import Predictor
from model.outputs.encoding import paste_parts_uv
from model.outputs.visualize import draw_overlay
from model.paths import DEFAULT_WEIGHTS
from model.temporal.flow import DISFlow
from model.video import VideoOptions, iter_video
from model.video.render import viridis_parts
from model.video.stability import isi, itf

MODULE = "benchmarks.video_jitter"
VARIANTS = ("off", "on")
METRICS = (
    "part_accuracy",
    "uv_error",
    "uv_jitter",
    "part_flips",
    "part_flips_painting",
    "part_flips_chart",
    "uv_jitter_surface",
    "part_flips_surface",
    "pred_delta_uv",
    "painted",
    "painted_change",
    "gt_painted_change",
)
VIDEOS = ("parts", "viridis", "viridis_gt_where_painted", "viridis_gt")
"""The videos whose ITF and ISI are measured: the overlay, the predicted chart map, the
ground-truth chart map where the prediction paints a person (0 elsewhere: the prediction's
coverage with no chart error or flicker of its own), and the ground-truth chart map."""


@dataclasses.dataclass
class Frame:
    """Merged maps of one frame: parts (H, W) uint8, uv (H, W, 2) float32, both for the
    prediction and the ground truth; the two visualisation frames (H, W, 3) uint8."""

    parts: np.ndarray
    uv: np.ndarray
    gt_parts: np.ndarray
    gt_uv: np.ndarray
    gt_instance: np.ndarray
    views: dict[str, np.ndarray]


def clips(dataset: DensePoseCocoDataset) -> list[list[int]]:
    """Dataset indices of each clip's frames, in frame order, clips by ``vid_id``."""
    by_clip: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for index, image in enumerate(dataset.images):
        if "vid_id" in image:
            by_clip[image["vid_id"]].append((image["frame_id"], index))
    return [[index for _, index in sorted(frames)] for _, frames in sorted(by_clip.items())]


def ensure_clips(
    data: Path, *, clips_count: int, frames: int, height: int, width: int, seed: int
) -> Path:
    """``data``/annotations.json, rendering ``clips_count`` clips there first if it is missing."""
    annotations = data / "annotations.json"
    if not annotations.is_file():
        from model.data.synth import SynthConfig, generate

        print(f"rendering {clips_count} clips of {frames} frames into {data}", file=sys.stderr)
        scene = SceneConfig(height=height, width=width, min_persons=1, max_persons=3)
        config = SynthConfig(scene=scene, seed=seed)
        generate(data, images=0, clips=clips_count, frames=frames, config=config)
    return annotations


def load_predictor(args: argparse.Namespace) -> tuple[Predictor, str]:
    if args.untrained:
        with tempfile.TemporaryDirectory() as tmp:
            weights = random_checkpoint(Path(tmp) / "net.safetensors", get_config(args.untrained))
            predictor = Predictor.from_checkpoint(weights, device=args.device)
        return predictor, f"untrained {args.untrained} (thresholds 0, 3 persons)"
    if not Path(args.weights).is_file():
        raise SystemExit(f"error: no weights at {args.weights} (or pass --untrained CONFIG)")
    return Predictor.from_checkpoint(args.weights, device=args.device), str(args.weights)


def run_clip(
    dataset: DensePoseCocoDataset,
    indices: Sequence[int],
    predictor: Predictor,
    options: VideoOptions,
    seconds: dict[str, float],
    *,
    oracle: bool = False,
) -> Iterator[Frame]:
    """The clip's frames through ``iter_video``; ``oracle``: smooth with the exact flow of the
    clip's persons (``benchmarks.oracle_flow``) instead of the options' estimator."""
    images = [dataset.image_rgb(i) for i in indices]
    all_labels = []
    for i in indices:
        labels = dataset.dense_labels(i)
        if labels is None:
            raise SystemExit(f"error: frame {i} has no dense labels")
        all_labels.append(labels)
    flow = OracleFlow(images, all_labels, DISFlow()) if oracle and options.smooth else None
    for frame in iter_video(images, predictor, options, flow=flow, seconds=seconds):
        gt_parts, gt_uv, gt_instance = all_labels[frame.index]
        parts, u, v = paste_parts_uv(frame.result)
        painted_gt = np.where(parts.numpy() > 0, gt_parts, 0).astype(np.uint8)
        yield Frame(
            parts=parts.numpy(),
            uv=np.stack([u.numpy(), v.numpy()], -1),
            gt_parts=gt_parts,
            gt_uv=gt_uv,
            gt_instance=gt_instance,
            views={
                "parts": draw_overlay(frame.image_rgb, frame.result),
                "viridis": viridis_parts(parts.numpy()),
                "viridis_gt_where_painted": viridis_parts(painted_gt),
                "viridis_gt": viridis_parts(gt_parts),
            },
        )


class Tally:
    """Sums and counts of each metric over frames and frame pairs."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, float] = defaultdict(float)

    def add(self, name: str, values: np.ndarray, count: float | None = None) -> None:
        self.sums[name] += float(values.sum())
        self.counts[name] += float(values.size if count is None else count)

    def include(self, other: Tally) -> None:
        """Add ``other``'s sums and counts to these (a clip's into the whole run's)."""
        for name, value in other.sums.items():
            self.sums[name] += value
        for name, value in other.counts.items():
            self.counts[name] += value

    def means(self) -> dict[str, float | None]:
        return {
            name: self.sums[name] / self.counts[name] if self.counts[name] else None
            for name in METRICS
        }


def score_frame(tally: Tally, frame: Frame) -> None:
    person = frame.gt_parts > 0
    right = person & (frame.parts == frame.gt_parts)
    tally.add("part_accuracy", right[person])
    tally.add("uv_error", np.abs(frame.uv[right] - frame.gt_uv[right]).mean(-1))
    tally.add("painted", frame.parts > 0)


def score_pair(tally: Tally, previous: Frame, frame: Frame) -> None:
    same_gt = (frame.gt_parts > 0) & (frame.gt_parts == previous.gt_parts)
    flips = (frame.parts != previous.parts)[same_gt]
    painting = ((frame.parts > 0) != (previous.parts > 0))[same_gt]
    tally.add("part_flips", flips)
    tally.add("part_flips_painting", painting)
    tally.add("part_flips_chart", flips & ~painting)
    right = same_gt & (frame.parts == frame.gt_parts) & (previous.parts == previous.gt_parts)
    change = (frame.uv - previous.uv) - (frame.gt_uv - previous.gt_uv)
    tally.add("uv_jitter", np.linalg.norm(change[right], axis=-1))
    same_pred = (frame.parts > 0) & (frame.parts == previous.parts)
    tally.add("pred_delta_uv", np.linalg.norm((frame.uv - previous.uv)[same_pred], axis=-1))
    tally.add("painted_change", (frame.parts > 0) != (previous.parts > 0))
    score_surface_pair(tally, previous, frame)


def score_surface_pair(tally: Tally, previous: Frame, frame: Frame) -> None:
    """Flips and jitter following the body's surface points from ``frame`` back to ``previous``."""
    flow, matched = surface_flow(
        (frame.gt_parts, frame.gt_uv, frame.gt_instance),
        (previous.gt_parts, previous.gt_uv, previous.gt_instance),
    )
    ys, xs = np.nonzero(matched)
    qy = ys + np.rint(flow[1, ys, xs]).astype(np.int64)
    qx = xs + np.rint(flow[0, ys, xs]).astype(np.int64)
    now, before = frame.parts[ys, xs], previous.parts[qy, qx]
    tally.add("part_flips_surface", now != before)
    right = (now == frame.gt_parts[ys, xs]) & (before == previous.gt_parts[qy, qx])
    change = (frame.uv[ys, xs] - previous.uv[qy, qx]) - (
        frame.gt_uv[ys, xs] - previous.gt_uv[qy, qx]
    )
    tally.add("uv_jitter_surface", np.linalg.norm(change[right], axis=-1))
    tally.add("gt_painted_change", (frame.gt_parts > 0) != (previous.gt_parts > 0))


def evaluate_variant(
    dataset: DensePoseCocoDataset,
    clip_indices: Sequence[int],
    predictor: Predictor,
    options: VideoOptions,
    tally: Tally,
    stability: dict[str, list[float]],
    *,
    oracle: bool = False,
) -> dict[str, float]:
    """Score one clip under one variant; its seconds per stage."""
    seconds: dict[str, float] = {}
    previous: Frame | None = None
    views: dict[str, list[np.ndarray]] = {name: [] for name in VIDEOS}
    clip = Tally()
    for frame in run_clip(dataset, clip_indices, predictor, options, seconds, oracle=oracle):
        score_frame(clip, frame)
        if previous is not None:
            score_pair(clip, previous, frame)
        for name in VIDEOS:
            views[name].append(frame.views[name])
        previous = frame
    for name in VIDEOS:
        stability[f"itf_{name}"].append(itf(views[name]))
        stability[f"isi_{name}"].append(isi(views[name]))
    tally.include(clip)
    for key in (
        "painted",
        "gt_painted_change",
        "part_flips",
        "part_flips_chart",
        "part_flips_surface",
    ):
        stability[f"clip_{key}"].append(clip.means()[key] or 0.0)
    return seconds


def benchmark(
    dataset: DensePoseCocoDataset, all_clips: list[list[int]], predictor: Predictor, args: Any
) -> dict[str, Any]:
    options = {
        "off": VideoOptions(smooth=False, batch_size=args.batch_size),
        "on": VideoOptions(
            flow="dis" if args.flow == "oracle" else args.flow,
            radius=args.radius,
            batch_size=args.batch_size,
            smooth_masks=not args.iuv_only,
        ),
    }
    tallies = {name: Tally() for name in VARIANTS}
    stability: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in VARIANTS}
    seconds: dict[str, dict[str, float]] = {name: defaultdict(float) for name in VARIANTS}
    frames = 0
    for number, indices in enumerate(all_clips):
        order = VARIANTS if number % 2 == 0 else VARIANTS[::-1]
        for name in order:
            start = time.perf_counter()
            stages = evaluate_variant(
                dataset,
                indices,
                predictor,
                options[name],
                tallies[name],
                stability[name],
                oracle=args.flow == "oracle",
            )
            for stage, value in stages.items():
                seconds[name][stage] += value
            seconds[name]["wall"] += time.perf_counter() - start
        frames += len(indices)
        print(f"clip {number + 1}/{len(all_clips)}: {len(indices)} frames", file=sys.stderr)
    results = {}
    for name in VARIANTS:
        stages = {k: v for k, v in seconds[name].items() if k != "wall"}
        results[name] = {
            **tallies[name].means(),
            **{key: _mean(values) for key, values in stability[name].items()},
            "seconds_per_frame": sum(stages.values()) / frames,
            "stage_seconds_per_frame": {k: v / frames for k, v in stages.items()},
            "per_clip": dict(stability[name]),
        }
    return {"frames": frames, "clips": len(all_clips), "results": results}


def _mean(values: Sequence[float]) -> float | None:
    """Mean of the finite values (NaN: a clip of one frame has no pair), None if none."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


ROWS = (
    ("part_accuracy", "chart accuracy (GT person pixels) ↑", 3),
    ("uv_error", "UV error where the chart is right ↓", 4),
    ("uv_jitter", "UV jitter: mean ‖ΔUV − ΔUV_gt‖ ↓", 4),
    ("part_flips", "chart flips where GT keeps its chart ↓", 4),
    ("part_flips_painting", "— of which painted in one frame only", 4),
    ("part_flips_chart", "— of which painted in both, another chart", 4),
    ("uv_jitter_surface", "UV jitter following the body ↓", 4),
    ("part_flips_surface", "chart flips following the body ↓", 4),
    ("pred_delta_uv", "mean ‖ΔUV‖ between predicted frames", 4),
    ("painted", "fraction of the frame painted as a person", 4),
    ("painted_change", "painted area changing between frames", 4),
    ("gt_painted_change", "— the same in the ground truth", 4),
    ("itf_parts", "ITF, parts video (dB) ↑", 2),
    ("isi_parts", "ISI, parts video ↑", 4),
    ("itf_viridis", "ITF, viridis video (dB) ↑", 2),
    ("isi_viridis", "ISI, viridis video ↑", 4),
    ("itf_viridis_gt_where_painted", "ITF, ground-truth viridis where painted (dB)", 2),
    ("itf_viridis_gt", "ITF, ground-truth viridis video (dB)", 2),
    ("seconds_per_frame", "seconds per frame ↓", 4),
)


def render_markdown(report: dict[str, Any]) -> str:
    results = report["results"]
    rows = [
        [label, *(_number(results[v].get(key), digits) for v in VARIANTS)]
        for key, label, digits in ROWS
    ]
    stages = sorted({s for v in VARIANTS for s in results[v]["stage_seconds_per_frame"]})
    rows += [
        [
            f"— {stage} s/frame",
            *(_number(results[v]["stage_seconds_per_frame"].get(stage), 4) for v in VARIANTS),
        ]
        for stage in stages
    ]
    setup = report["setup"]
    return (
        f"# Temporal smoothing on synthetic clips\n\n{describe(report['environment'])}\n\n"
        f"Network: {setup['network']}. {report['clips']} clips, {report['frames']} frames "
        f"from `{setup['data']}`; smoothing: flow `{setup['flow']}`, r = {setup['radius']}, "
        f"weights {setup['centre_weight']:g} (centre) and {setup['neighbour_weight']:g} "
        f"(neighbours); masks {'smoothed too' if setup.get('smooth_masks') else 'not smoothed'}; "
        f"batch {setup['batch_size']}. Metrics: see `benchmarks/video_jitter.py`."
        "\n\n"
        + markdown_table(["metric", "smoothing off", "smoothing on"], rows)
        + "\n\n"
        + per_clip_table(results)
    )


def per_clip_table(results: dict[str, Any]) -> str:
    """Clips from the slowest to the fastest motion (ground-truth painted area changing
    between frames): ITF of the viridis video, painted fraction and chart flips (all, painted
    in both frames, following the body), off and on."""
    off, on = results["off"]["per_clip"], results["on"]["per_clip"]
    order = np.argsort(off["clip_gt_painted_change"])
    rows = [
        [
            str(int(k) + 1),
            _number(off["clip_gt_painted_change"][k], 4),
            *(_number(v["itf_viridis"][k], 2) for v in (off, on)),
            *(_number(v["itf_viridis_gt_where_painted"][k], 2) for v in (off, on)),
            *(_number(v["clip_painted"][k], 4) for v in (off, on)),
            *(_number(v["clip_part_flips"][k], 4) for v in (off, on)),
            *(_number(v["clip_part_flips_chart"][k], 4) for v in (off, on)),
            *(_number(v["clip_part_flips_surface"][k], 4) for v in (off, on)),
        ]
        for k in order
    ]
    header = [
        "clip",
        "GT motion",
        "ITF off",
        "ITF on",
        "GT-where-painted ITF off",
        "on",
        "painted off",
        "painted on",
        "flips off",
        "flips on",
        "chart flips off",
        "chart flips on",
        "flips on the body off",
        "on",
    ]
    return "Per clip, slowest motion first:\n\n" + markdown_table(header, rows)


def plot(report: dict[str, Any], path: Path) -> None:
    results = report["results"]
    figure = Figure(figsize=(13, 4), layout="constrained")
    axes = figure.subplots(1, 4)
    panels = (
        ("ITF (dB)", ["itf_parts", "itf_viridis", "itf_viridis_gt_where_painted"]),
        ("ISI", ["isi_parts", "isi_viridis"]),
        ("UV jitter: at a pixel, on the body", ["uv_jitter", "uv_jitter_surface"]),
        ("chart flips: at a pixel, on the body", ["part_flips", "part_flips_surface"]),
    )
    for ax, (title, keys) in zip(axes, panels, strict=True):
        positions = np.arange(len(keys))
        for offset, variant in zip((-0.2, 0.2), VARIANTS, strict=True):
            values = [results[variant].get(key) or 0.0 for key in keys]
            ax.bar(positions + offset, values, width=0.4, label=f"smoothing {variant}")
        ax.set_xticks(positions, [key.replace("_", "\n", 1) for key in keys], fontsize=8)
        ax.set_title(title)
    axes[0].legend()
    figure.savefig(path, dpi=120)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    scene, video = SceneConfig(), VideoOptions()
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for video_jitter.*")
    parser.add_argument("--data", type=Path, default=Path("data/clips"), help="ddp synth clips")
    parser.add_argument("--clips", type=int, default=8, help="clips to render if --data is empty")
    parser.add_argument("--frames", type=int, default=16, help="frames per rendered clip")
    parser.add_argument(
        "--seed", type=int, default=0, help="of rendered clips (another: a validation set)"
    )
    parser.add_argument("--height", type=int, default=scene.height, help="of rendered clips")
    parser.add_argument("--width", type=int, default=scene.width, help="of rendered clips")
    parser.add_argument("--limit", type=int, help="use the first N clips only")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="checkpoint")
    parser.add_argument("--untrained", metavar="CONFIG", help="random network (plumbing only)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda[:N]")
    parser.add_argument(
        "--flow",
        default=video.flow,
        choices=["dis", "raft", "oracle"],
        help="oracle: the exact flow of the clips' persons from their labels (DIS elsewhere)",
    )
    parser.add_argument("--radius", type=int, default=video.radius)
    parser.add_argument("--batch-size", type=int, default=video.batch_size)
    parser.add_argument(
        "--iuv-only",
        action="store_true",
        help="smooth the IUV logits only (the paper), not the persons' masks",
    )
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write video_jitter.json, .md and .png; return the report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    configure_torch(args.threads)
    env = environment(module=MODULE, argv=argv, threads=args.threads)
    annotations = ensure_clips(
        args.data,
        clips_count=args.clips,
        frames=args.frames,
        height=args.height,
        width=args.width,
        seed=args.seed,
    )
    dataset = DensePoseCocoDataset(annotations)
    all_clips = clips(dataset)[: args.limit]
    if not all_clips:
        raise SystemExit(f"error: no clips (images with vid_id) in {annotations}")
    predictor, network = load_predictor(args)
    report = {
        "environment": env,
        "setup": {
            "network": network,
            "data": str(args.data),
            "flow": args.flow,
            "radius": args.radius,
            "centre_weight": VideoOptions().centre_weight,
            "neighbour_weight": VideoOptions().neighbour_weight,
            "batch_size": args.batch_size,
            "smooth_masks": not args.iuv_only,
        },
        **benchmark(dataset, all_clips, predictor, args),
    }
    write_outputs(args.out, "video_jitter", report, markdown=render_markdown, plot=plot)
    return report


if __name__ == "__main__":
    main()
