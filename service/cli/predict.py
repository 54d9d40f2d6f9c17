"""``ddp predict``: dense pose of image files -> IUV PNG, instance PNG, overlay PNG, JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from model.inference.preprocess import read_image_rgb
from model.outputs.encoding import encode_iuv_png, mask_owners, paste_owners
from model.outputs.visualize import draw_overlay, write_png
from model.structures import DensePoseResult
from service.cli.network import load_predictor


def write_prediction(
    image_rgb: np.ndarray, result: DensePoseResult, out_dir: Path, stem: str
) -> dict[str, object]:
    """Write <stem>.iuv.png, .instances.png, .overlay.png and .json; return the JSON summary.

    The instance PNG is (H, W) uint8: 0 = background, i + 1 = person i of ``result`` (persons
    past 254 are not drawn), each pixel owned by the best-scoring mask covering it.
    """
    _, parts, uv = paste_owners(result)
    files = {
        "iuv_png": f"{stem}.iuv.png",
        "instances_png": f"{stem}.instances.png",
        "overlay_png": f"{stem}.overlay.png",
    }
    (out_dir / files["iuv_png"]).write_bytes(encode_iuv_png(parts, uv))
    owner = mask_owners(result)
    instances = torch.where(owner < 255, owner + 1, 0).to(torch.uint8).numpy()
    cv2.imwrite(str(out_dir / files["instances_png"]), instances)
    write_png(out_dir / files["overlay_png"], draw_overlay(image_rgb, result))
    summary: dict[str, object] = {
        "image_size": {"height": image_rgb.shape[0], "width": image_rgb.shape[1]},
        "persons": [
            {"score": round(float(score), 4), "box_xyxy": [round(float(c), 2) for c in box]}
            for score, box in zip(result.scores, result.boxes_xyxy, strict=True)
        ],
        "files": files,
    }
    (out_dir / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_predict(args: argparse.Namespace) -> int:
    predictor = load_predictor(args)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in tqdm(args.images, desc="predict", unit="image", file=sys.stderr):
        image = read_image_rgb(Path(path))
        result = predictor([image])[0].best(score_threshold=args.score_threshold)
        write_prediction(image, result, out_dir, Path(path).stem)
        tqdm.write(f"{path}: {len(result)} person(s) -> {out_dir}", file=sys.stderr)
    return 0
