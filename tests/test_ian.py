"""Instance-aware normalisation: per-region statistics, overlap rule, rest-of-image regions."""

import pytest
import torch
from torch import nn

from model.network.ian import InstanceAwareNorm, SiteRegions
from model.network.sparse import SparseSites

C = 4


def _box(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _norm(eps: float = 1e-5) -> InstanceAwareNorm:
    """Float64 IAN with a non-trivial shared affine."""
    norm = InstanceAwareNorm(C, eps=eps).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
    return norm


def _instance_norm_reference(feats: torch.Tensor, norm: InstanceAwareNorm) -> torch.Tensor:
    """``nn.InstanceNorm2d`` over the given (n, C) sites as one (1, C, n, 1) instance."""
    instance_norm = nn.InstanceNorm2d(C, eps=norm.eps, affine=False)
    normed = instance_norm(feats.t()[None, :, :, None])[0, :, :, 0].t()  # (n, C)
    return normed * norm.weight + norm.bias


def test_disjoint_regions_equal_instance_norm_of_each_instance() -> None:
    region_masks = torch.stack(
        [_box(8, 10, 0, 5, 0, 4), _box(8, 10, 3, 8, 6, 10), _box(8, 10, 2, 7, 1, 9)]
    )
    sites = SparseSites.from_mask(torch.stack([region_masks[0] | region_masks[1], region_masks[2]]))
    region_image = torch.tensor([0, 0, 1])
    regions = SiteRegions.from_masks(sites, region_masks, region_image)
    feats = torch.randn(len(sites), C, dtype=torch.float64) * 3 + 1
    norm = _norm()
    out = norm(feats, regions)
    b, y, x = sites.coords.unbind(1)
    for mask, image in zip(region_masks, region_image, strict=True):
        inside = mask[y, x] & (b == image)
        expected = _instance_norm_reference(feats[inside], norm)
        torch.testing.assert_close(out[inside], expected, rtol=1e-12, atol=1e-12)


def test_the_path_for_disjoint_regions_is_the_general_one_bit_for_bit() -> None:
    """Shipped outputs must not move (tests/test_golden.py compares files byte for byte): the
    shortcut for sites in one region each does the general path's arithmetic in its order."""
    region_masks = torch.stack([_box(16, 20, 0, 9, 0, 8), _box(16, 20, 6, 16, 10, 20)])
    sites = SparseSites.from_mask(region_masks.any(0, keepdim=True))
    regions = SiteRegions.from_masks(sites, region_masks, torch.tensor([0, 0]))
    assert regions.region_of_site is not None  # the shortcut applies
    general = SiteRegions(regions.site_index, regions.region_index, regions.num_regions)
    general.__dict__["region_of_site"] = None  # the cached property, forced to the general path
    norm = InstanceAwareNorm(C)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
    feats = torch.randn(len(sites), C) * 3 + 1
    assert torch.equal(norm(feats, regions), norm(feats, general))


def test_overlapping_sites_average_their_regions_normalised_values() -> None:
    sites = SparseSites.from_mask(_box(6, 6, 0, 6, 0, 6)[None])
    region_masks = torch.stack(
        [_box(6, 6, 0, 4, 0, 4), _box(6, 6, 2, 6, 2, 6), _box(6, 6, 1, 5, 0, 3)]
    )
    regions = SiteRegions.from_masks(sites, region_masks, torch.zeros(3, dtype=torch.int64))
    feats = torch.randn(len(sites), C, dtype=torch.float64)
    norm = _norm(eps=1e-3)
    out = norm(feats, regions)

    members: dict[int, list[int]] = {}
    pairs = zip(regions.site_index.tolist(), regions.region_index.tolist(), strict=True)
    for site, region in pairs:
        members.setdefault(region, []).append(site)
    normalised: dict[int, list[torch.Tensor]] = {}
    for region_sites in members.values():
        values = feats[region_sites]
        mean = values.mean(0)
        var = ((values - mean) ** 2).mean(0)
        for site, value in zip(region_sites, values, strict=True):
            normalised.setdefault(site, []).append((value - mean) / torch.sqrt(var + norm.eps))
    assert max(len(v) for v in normalised.values()) == 3  # some site lies in all three masks
    for site, values in normalised.items():
        expected = torch.stack(values).mean(0) * norm.weight + norm.bias
        torch.testing.assert_close(out[site], expected, rtol=1e-12, atol=1e-12)


def test_uncovered_sites_form_a_rest_region_per_image() -> None:
    union = torch.stack([_box(5, 5, 0, 5, 0, 5), _box(5, 5, 1, 4, 1, 4)])
    sites = SparseSites.from_mask(union)
    region_masks = _box(5, 5, 0, 2, 0, 5)[None]  # covers the top of image 0 only
    regions = SiteRegions.from_masks(sites, region_masks, torch.tensor([0]))
    assert regions.num_regions == 1 + 2
    b, y, _ = sites.coords.unbind(1)
    region_of_site = torch.full((len(sites),), -1)
    region_of_site[regions.site_index] = regions.region_index
    assert len(regions) == len(sites)  # no overlaps here: one region per site
    expected = torch.where((b == 0) & (y < 2), 0, 1 + b)
    assert torch.equal(region_of_site, expected)

    feats = torch.randn(len(sites), C, dtype=torch.float64)
    norm = _norm()
    out = norm(feats, regions)
    rest_of_image_0 = (b == 0) & (y >= 2)
    expected_rest = _instance_norm_reference(feats[rest_of_image_0], norm)
    torch.testing.assert_close(out[rest_of_image_0], expected_rest, rtol=1e-12, atol=1e-12)


def test_no_regions_is_per_image_normalisation() -> None:
    mask = torch.rand(3, 6, 7) < 0.5
    sites = SparseSites.from_mask(mask)
    regions = SiteRegions.from_masks(
        sites, torch.zeros(0, 6, 7, dtype=torch.bool), torch.zeros(0, dtype=torch.int64)
    )
    assert regions.num_regions == 3
    feats = torch.randn(len(sites), C, dtype=torch.float64)
    norm = _norm()
    out = norm(feats, regions)
    for image in range(3):
        inside = sites.coords[:, 0] == image
        expected = _instance_norm_reference(feats[inside], norm)
        torch.testing.assert_close(out[inside], expected, rtol=1e-12, atol=1e-12)


def test_zero_sites_give_an_empty_output() -> None:
    sites = SparseSites.from_mask(torch.zeros(2, 4, 4, dtype=torch.bool))
    regions = SiteRegions.from_masks(
        sites, torch.ones(1, 4, 4, dtype=torch.bool), torch.tensor([1])
    )
    assert len(regions) == 0
    feats = torch.zeros(0, C, requires_grad=True)
    out = InstanceAwareNorm(C)(feats, regions)
    assert out.shape == (0, C)
    out.sum().backward()  # stays connected to the graph
    assert feats.grad is not None and feats.grad.shape == (0, C)


def test_gradients_reach_gamma_beta_and_features() -> None:
    sites = SparseSites.from_mask(torch.ones(1, 4, 5, dtype=torch.bool))
    regions = SiteRegions.from_masks(
        sites, torch.stack([_box(4, 5, 0, 3, 0, 3), _box(4, 5, 1, 4, 2, 5)]), torch.tensor([0, 0])
    )
    norm = _norm()
    feats = torch.randn(len(sites), C, dtype=torch.float64, requires_grad=True)
    (norm(feats, regions) * torch.randn(len(sites), C, dtype=torch.float64)).sum().backward()
    for grad in (norm.weight.grad, norm.bias.grad, feats.grad):
        assert grad is not None and bool(grad.abs().sum() > 0)
    assert torch.autograd.gradcheck(lambda f: norm(f, regions), (feats.detach().requires_grad_(),))


def test_inputs_are_validated() -> None:
    sites = SparseSites.from_mask(torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="region_masks"):
        SiteRegions.from_masks(sites, torch.ones(1, 4, 5, dtype=torch.bool), torch.tensor([0]))
    with pytest.raises(ValueError, match="bool"):
        SiteRegions.from_masks(sites, torch.ones(1, 4, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="region_image"):
        SiteRegions.from_masks(sites, torch.ones(1, 4, 4, dtype=torch.bool), torch.tensor([0, 0]))
    regions = SiteRegions.from_masks(
        sites, torch.ones(1, 4, 4, dtype=torch.bool), torch.tensor([0])
    )
    with pytest.raises(ValueError, match="feats"):
        InstanceAwareNorm(C)(torch.randn(len(sites), C + 1), regions)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu() -> None:
    sites = SparseSites.from_mask(torch.ones(1, 6, 6, dtype=torch.bool))
    region_masks = torch.stack([_box(6, 6, 0, 4, 0, 4), _box(6, 6, 2, 6, 2, 6)])
    regions = SiteRegions.from_masks(sites, region_masks, torch.tensor([0, 0]))
    norm = InstanceAwareNorm(C)
    feats = torch.randn(len(sites), C)
    expected = norm(feats, regions)
    cuda = torch.device("cuda")
    cuda_regions = SiteRegions.from_masks(
        sites.to(cuda), region_masks.to(cuda), torch.tensor([0, 0], device=cuda)
    )
    actual = norm.to(cuda)(feats.to(cuda), cuda_regions)
    torch.testing.assert_close(actual.cpu(), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(cuda_regions.site_index.cpu(), regions.site_index)
    moved = norm(feats.to(cuda), regions.to(cuda))
    torch.testing.assert_close(moved, actual, rtol=0, atol=0)
