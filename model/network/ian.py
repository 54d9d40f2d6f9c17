"""Instance-aware normalisation (IAN, paper eq. 2-4) over the active sites of a sparse map.

Each person instance is a normalisation region: the mean and variance of every channel are taken
over the sites inside that instance's (resized) mask only, and all regions share one affine
gamma, beta ("they all belong to the person category").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn

from model.network.sparse.sites import SparseSites


@dataclass
class SiteRegions:
    """Membership of active sites in normalisation regions (person instances).

    One row per (site, region) pair; a site covered by k regions has k rows.

    Attributes:
        site_index: (P,) int64, index into the M sites.
        region_index: (P,) int64, index into ``num_regions``.
        num_regions: number of regions (some may be empty).
    """

    site_index: Tensor
    region_index: Tensor
    num_regions: int

    @cached_property
    def count(self) -> Tensor:
        """(num_regions, 1) int64 sites per region, at least 1 (an empty region divides
        nothing); computed once for every IAN layer that uses these regions."""
        return torch.bincount(self.region_index, minlength=self.num_regions).clamp(min=1)[:, None]

    @cached_property
    def region_of_site(self) -> Tensor | None:
        """(M,) the region of each site when every site is in exactly one region (no two
        instance masks share a site), in site order; else None."""
        sites = self.site_index.shape[0]
        if sites == 0 or int(self.site_index.max()) + 1 != sites:
            return None
        multiplicity = torch.bincount(self.site_index, minlength=sites)
        if not bool((multiplicity == 1).all()):
            return None
        return torch.empty_like(self.region_index).index_put_((self.site_index,), self.region_index)

    @cached_property
    def multiplicity(self) -> Tensor:
        """(M, 1) int64 regions per site, at least 1, M = the largest site index + 1."""
        sites = int(self.site_index.max()) + 1 if len(self) else 0
        return torch.bincount(self.site_index, minlength=sites).clamp(min=1)[:, None]

    def __len__(self) -> int:
        return int(self.site_index.shape[0])

    def to(self, device: torch.device | str) -> SiteRegions:
        return SiteRegions(
            self.site_index.to(device), self.region_index.to(device), self.num_regions
        )

    @classmethod
    def from_masks(
        cls, sites: SparseSites, region_masks: Tensor, region_image: Tensor
    ) -> SiteRegions:
        """Regions from R instance masks at the sites' resolution.

        Args:
            sites: the M active sites (B images of size (H, W)).
            region_masks: (R, H, W) bool, one mask per region (person instance).
            region_image: (R,) int64, the batch index of each region's image.

        Returns:
            R + B regions: region r < R holds the sites of image ``region_image[r]`` that its
            mask covers; region R + b holds the active sites of image b covered by no mask
            ("the rest of that image", empty when there is none), so every site is normalised.
            With R = 0 this is plain per-image normalisation over the active sites (the paper's
            "w/o IAN" ablation).
        """
        _check_region_inputs(sites, region_masks, region_image)
        b, y, x = sites.coords.unbind(1)
        covers = region_masks[:, y, x] & (region_image[:, None] == b)  # (R, M)
        region_of_pair, site_of_pair = covers.nonzero(as_tuple=True)
        uncovered = (~covers.any(dim=0)).nonzero(as_tuple=True)[0]  # (M_rest,)
        num_masks = region_masks.shape[0]
        return cls(
            site_index=torch.cat([site_of_pair, uncovered]),
            region_index=torch.cat([region_of_pair, num_masks + b[uncovered]]),
            num_regions=num_masks + sites.batch_size,
        )


def _check_region_inputs(sites: SparseSites, region_masks: Tensor, region_image: Tensor) -> None:
    if region_masks.dim() != 3 or tuple(region_masks.shape[1:]) != sites.spatial_shape:
        raise ValueError(
            f"region_masks must be (R, H, W) with (H, W) = {sites.spatial_shape}, "
            f"got {tuple(region_masks.shape)}"
        )
    if region_masks.dtype != torch.bool:
        raise ValueError(f"region_masks must be bool, got {region_masks.dtype}")
    if region_image.shape != (region_masks.shape[0],) or region_image.dtype != torch.int64:
        raise ValueError(
            f"region_image must be ({region_masks.shape[0]},) int64, "
            f"got {tuple(region_image.shape)} {region_image.dtype}"
        )


def _region_sum(values: Tensor, regions: SiteRegions) -> Tensor:
    """(P, C) values of the (site, region) pairs -> (num_regions, C) sums per region."""
    return _region_sum_by(values, regions.region_index, regions.num_regions)


def _region_sum_by(values: Tensor, region_index: Tensor, num_regions: int) -> Tensor:
    """(P, C) values, (P,) their regions -> (num_regions, C) sums per region."""
    return values.new_zeros(num_regions, values.shape[1]).index_add(0, region_index, values)


class InstanceAwareNorm(nn.Module):
    """Instance-aware normalisation of (M, C) site features, eq. 2-4 of the paper.

    For each region i and channel c: mu = mean, var = biased variance over the sites of region
    i (eq. 2-3); the site's value is normalised as (x - mu) / sqrt(var + eps) (eq. 4), then
    scaled by gamma and shifted by beta, shared by all regions.

    Overlap rule (the paper leaves it open): a site covered by k >= 2 regions outputs the mean
    over its k regions of its normalised values; each region's statistics include all of its
    sites, the shared ones too. A site in no region (impossible with
    :meth:`SiteRegions.from_masks`) outputs beta.
    """

    def __init__(self, num_channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))  # gamma, (C,)
        self.bias = nn.Parameter(torch.zeros(num_channels))  # beta, (C,)

    def forward(self, feats: Tensor, regions: SiteRegions) -> Tensor:
        """(M, C) features, their regions -> (M, C) normalised features."""
        if feats.dim() != 2 or feats.shape[1] != self.num_channels:
            raise ValueError(f"feats must be (M, {self.num_channels}), got {tuple(feats.shape)}")
        count = regions.count.to(feats.dtype)  # (num_regions, 1)
        exclusive = regions.region_of_site
        if exclusive is not None and exclusive.shape[0] == feats.shape[0]:
            # Every site in one region: the statistics straight from the sites, no pairs.
            mean = _region_sum_by(feats, exclusive, regions.num_regions) / count
            centred = feats - mean[exclusive]  # (M, C)
            var = _region_sum_by(centred * centred, exclusive, regions.num_regions) / count
            normed = centred * torch.rsqrt(var + self.eps)[exclusive]  # (M, C)
            return normed * self.weight + self.bias  # the general path's arithmetic, bit for bit
        values = feats[regions.site_index]  # (P, C)
        mean = _region_sum(values, regions) / count  # (num_regions, C)
        centred = values - mean[regions.region_index]  # (P, C)
        var = _region_sum(centred * centred, regions) / count  # (num_regions, C)
        normed = centred * torch.rsqrt(var + self.eps)[regions.region_index]  # (P, C)
        out = feats.new_zeros(feats.shape).index_add(0, regions.site_index, normed)
        multiplicity = feats.new_ones(feats.shape[0], 1)  # sites in no region: 1 (-> beta)
        multiplicity[: regions.multiplicity.shape[0]] = regions.multiplicity
        return out / multiplicity * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"
