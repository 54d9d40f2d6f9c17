"""DensePose-COCO writer -> loader round trip, and the loader on a file in the real schema."""

import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from model.data.coco import CATEGORIES, MASK_SIZE, person_annotations
from model.data.dense import read_dense, write_dense
from model.data.loader import DensePoseCocoDataset, targets_from_annotations


def _labels(height: int = 48, width: int = 64):
    """Two overlapping 'people' (person 2 in front) with charts 2 / 23 and smooth U, V."""
    parts = np.zeros((height, width), dtype=np.uint8)
    instance = np.zeros((height, width), dtype=np.uint8)
    parts[5:40, 8:30], instance[5:40, 8:30] = 2, 1
    parts[10:45, 22:50], instance[10:45, 22:50] = 23, 2
    ys, xs = np.mgrid[0:height, 0:width]
    uv = np.stack([xs / width, ys / height], axis=-1).astype(np.float32) * (parts > 0)[..., None]
    return parts, uv, instance


def _dataset(tmp_path, annotations, height, width, **image_fields):
    records = [{"id": i + 1, "image_id": 7, **a} for i, a in enumerate(annotations)]
    image = {"id": 7, "file_name": "x.jpg", "height": height, "width": width, **image_fields}
    path = tmp_path / "annotations.json"
    data = {"images": [image], "annotations": records, "categories": CATEGORIES}
    path.write_text(json.dumps(data))
    return DensePoseCocoDataset(path)


def test_round_trip_writer_to_targets(tmp_path):
    parts, uv, instance = _labels()
    rng = np.random.default_rng(0)
    annotations = person_annotations(parts, uv, instance, rng, num_points=50, min_pixels=10)
    assert [a["dense_id"] for a in annotations] == [1, 2]
    for a in annotations:
        assert len(a["dp_masks"]) == 14 and len(a["dp_x"]) == 50
        assert all(0 <= v < MASK_SIZE for v in a["dp_x"] + a["dp_y"])
    targets = _dataset(tmp_path, annotations, *parts.shape).targets(0)
    masks = np.stack([instance == 1, instance == 2])
    assert torch.equal(targets.masks, torch.from_numpy(masks))
    assert targets.boxes_xyxy.tolist() == [[8, 5, 30, 40], [22, 10, 50, 45]]
    assert targets.has_dp.all()
    # points land on pixel centres of their own person, with that pixel's labels
    cols = (targets.point_xy[:, 0] - 0.5).round().long()
    rows = (targets.point_xy[:, 1] - 0.5).round().long()
    assert torch.allclose(targets.point_xy, torch.stack([cols, rows], 1).float() + 0.5, atol=1e-3)
    assert torch.equal(torch.from_numpy(instance)[rows, cols].long(), targets.point_instance + 1)
    assert torch.equal(torch.from_numpy(parts)[rows, cols].long(), targets.point_part)
    assert torch.allclose(torch.from_numpy(uv)[rows, cols], targets.point_uv, atol=1e-5)
    # dp_masks survive the 256 x 256 box frame: nearest resampling of a box-aligned mask
    assert torch.equal(targets.dp_masks, targets.masks)


def test_small_people_are_ignored_and_empty_images_are_well_formed(tmp_path):
    parts, uv, instance = _labels()
    annotations = person_annotations(
        parts, uv, instance, np.random.default_rng(0), num_points=5, min_pixels=800
    )
    assert [a["iscrowd"] for a in annotations] == [1, 0]
    assert "dp_x" not in annotations[0]
    assert len(targets_from_annotations(annotations, *parts.shape)) == 1
    empty = targets_from_annotations([], 10, 12)
    assert len(empty) == 0 and empty.masks.shape == (0, 10, 12)


def test_dense_maps_round_trip(tmp_path):
    parts, uv, instance = _labels()
    write_dense(tmp_path / "d.npz", parts, uv, instance)
    parts2, uv2, instance2 = read_dense(tmp_path / "d.npz")
    assert np.array_equal(parts2, parts) and np.array_equal(instance2, instance)
    assert np.abs(uv2 - uv).max() <= 0.5 / 65535 + 1e-7


def _poly_rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()}


def test_loader_reads_the_real_densepose_coco_schema(tmp_path):
    """A hand-made file shaped like densepose_coco_2014_*.json (fields as the real data)."""
    height, width = 60, 80
    part_mask = np.zeros((MASK_SIZE, MASK_SIZE), dtype=bool)
    part_mask[64:192, 64:192] = True  # the middle of the box: torso (coarse part 1)
    annotated = {
        "segmentation": [[10.0, 10.0, 50.0, 10.0, 50.0, 50.0, 10.0, 50.0]],
        "num_keypoints": 3,
        "area": 1600.0,
        "iscrowd": 0,
        "keypoints": [0] * 51,
        "bbox": [10.0, 10.0, 40.0, 40.0],
        "category_id": 1,
        "dp_I": [2.0, 23.0],
        "dp_U": [0.25, 0.5],
        "dp_V": [0.75, 0.125],
        "dp_x": [128.0, 64.0],
        "dp_y": [32.0, 192.0],
        "dp_masks": [_poly_rle(part_mask)] + [[] for _ in range(13)],
    }
    plain = {  # a person without dense-pose annotation, uncompressed-RLE segmentation
        "segmentation": {"counts": [60 * 70, 30, 570], "size": [height, width]},  # column 70
        "area": 30.0,
        "iscrowd": 0,
        "bbox": [70.0, 0.0, 1.0, 30.0],
        "category_id": 1,
    }
    crowd = {**plain, "iscrowd": 1}
    dataset = _dataset(tmp_path, [annotated, plain, crowd], height, width, coco_url="http://x")
    targets = dataset.targets(0)
    assert len(targets) == 2
    assert targets.has_dp.tolist() == [True, False]
    assert targets.boxes_xyxy[0].tolist() == [10, 10, 50, 50]
    assert targets.masks[0].sum() > 1500  # polygon decoded
    assert targets.masks[1].sum() == 30 and targets.masks[1][:30, 70].all()
    assert torch.equal(targets.dp_masks[1], targets.masks[1])
    # x = x0 + dp_x * w / 256 (detectron2's DensePoseDataRelative)
    assert targets.point_xy.tolist() == [[30.0, 15.0], [20.0, 40.0]]
    assert targets.point_instance.tolist() == [0, 0]
    assert targets.point_part.tolist() == [2, 23]
    assert targets.point_uv.tolist() == [[0.25, 0.75], [0.5, 0.125]]
    dp = targets.dp_masks[0]
    assert dp[20:40, 20:40].all() and dp.sum() == 400  # the box's middle half, 20 x 20 px
    with pytest.raises(FileNotFoundError):
        dataset.image_rgb(0)
