"""The grouped-conv dynamic mask head against an explicit per-instance computation."""

import torch
import torch.nn.functional as F

from model.network.dynamic_mask_head import DynamicMaskHead, layer_shapes, num_dynamic_params


def _explicit_instance(features, params, center, soi, shapes, stride):
    """One instance, float64, pixel by pixel for the coordinates and einsum for the 1x1 convs."""
    _, height, width = features.shape
    coords = torch.empty(2, height, width, dtype=torch.float64)
    for i in range(height):
        for j in range(width):
            coords[0, i, j] = (center[0] - (j * stride + stride // 2)) / soi
            coords[1, i, j] = (center[1] - (i * stride + stride // 2)) / soi
    x = torch.cat([features, coords])  # [C+2, h, w]
    offset = 0
    weights = []
    for cin, cout in shapes:
        weights.append(params[offset : offset + cin * cout].reshape(cout, cin))
        offset += cin * cout
    biases = []
    for _, cout in shapes:
        biases.append(params[offset : offset + cout])
        offset += cout
    assert offset == len(params)
    for index, (w, b) in enumerate(zip(weights, biases, strict=True)):
        x = torch.einsum("oc,chw->ohw", w, x) + b[:, None, None]
        if index < len(shapes) - 1:
            x = x.clamp(min=0)
    return F.interpolate(x[None], scale_factor=2.0, mode="bilinear", align_corners=False)[0]


def test_grouped_head_equals_per_instance_loop():
    torch.manual_seed(0)
    head = DynamicMaskHead(in_channels=8, channels=8, num_layers=3, in_stride=8).double()
    shapes = layer_shapes(8, 8, 3)
    assert head.num_params == num_dynamic_params(shapes) == (10 * 8 + 8) + (8 * 8 + 8) + (8 * 2 + 2)
    features = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    params = torch.randn(3, head.num_params, dtype=torch.float64)
    centers = torch.tensor([[12.0, 20.0], [40.0, 4.0], [30.0, 30.0]], dtype=torch.float64)
    soi = torch.tensor([64.0, 128.0, 64.0], dtype=torch.float64)
    image_index = torch.tensor([0, 1, 1])
    out = head(features, params, centers, soi, image_index)
    assert out.shape == (3, 2, 10, 14)
    for n in range(3):
        expected = _explicit_instance(
            features[image_index[n]], params[n], centers[n].tolist(), float(soi[n]), shapes, 8
        )
        torch.testing.assert_close(out[n], expected, rtol=1e-10, atol=1e-10)


def test_zero_instances_give_empty_output():
    head = DynamicMaskHead(in_channels=8, channels=8, num_layers=3, in_stride=8)
    out = head(
        torch.randn(1, 8, 4, 4),
        torch.zeros(0, head.num_params),
        torch.zeros(0, 2),
        torch.zeros(0),
        torch.zeros(0, dtype=torch.int64),
    )
    assert out.shape == (0, 2, 8, 8)
