"""The global IUV branch (paper section 3.4).

Background suppression keeps only the sites of X_agg inside M_fg (the union of the instance
masks); a sparse residual FCN of submanifold convs + instance-aware normalisation (IAN) + ReLU
runs on those sites alone; a 1x1 layer gives the 75 logits C (25 part, 25 U, 25 V).

Residual FCN (Fig. 3): each residual block is two sub-blocks with a skip connection around
them, followed by a third sub-block except in the last block; a sub-block is
SubmanifoldConv2d(3x3) -> norm -> ReLU.
"""

from __future__ import annotations

from torch import Tensor, nn

from model.config import NUM_IUV_LOGITS, NormName
from model.network.ian import InstanceAwareNorm, SiteRegions
from model.network.sparse import SparseSites, SubmanifoldConv2d, gather_from_dense, scatter_to_dense


class SparseSubBlock(nn.Module):
    """(M, Cin) -> (M, Cout): submanifold 3x3 conv, IAN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, backend: str) -> None:
        super().__init__()
        self.conv = SubmanifoldConv2d(
            in_channels, out_channels, kernel_size=3, bias=False, backend=backend
        )
        self.norm = InstanceAwareNorm(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, feats: Tensor, sites: SparseSites, regions: SiteRegions) -> Tensor:
        return self.relu(self.norm(self.conv(feats, sites), regions))


class SparseResidualBlock(nn.Module):
    """(M, C) -> (M, C): x + sub2(sub1(x)), then sub3 unless this is the last block."""

    def __init__(self, channels: int, *, last: bool, backend: str) -> None:
        super().__init__()
        self.sub1 = SparseSubBlock(channels, channels, backend=backend)
        self.sub2 = SparseSubBlock(channels, channels, backend=backend)
        self.sub3 = None if last else SparseSubBlock(channels, channels, backend=backend)

    def forward(self, feats: Tensor, sites: SparseSites, regions: SiteRegions) -> Tensor:
        out = feats + self.sub2(self.sub1(feats, sites, regions), sites, regions)
        return out if self.sub3 is None else self.sub3(out, sites, regions)


class IUVBranch(nn.Module):
    """``forward(x_agg (B, Cin, h, w), active (B, h, w) bool, region_masks (R, h, w) bool,
    region_image (R,) int64) -> C (B, 75, h, w)``, zero outside ``active``.

    ``active`` is M_fg (all ones for the "w/o Sparse" ablation). ``region_masks`` are the
    instance masks IAN normalises over; with ``norm="image"`` they are ignored and each image's
    active sites form one region (the "w/o IAN" ablation).
    """

    def __init__(
        self, *, in_channels: int, channels: int, num_blocks: int, norm: NormName, backend: str
    ) -> None:
        super().__init__()
        self.norm = norm
        self.stem = (
            SparseSubBlock(in_channels, channels, backend=backend)
            if in_channels != channels
            else None
        )
        self.blocks = nn.ModuleList(
            SparseResidualBlock(channels, last=i == num_blocks - 1, backend=backend)
            for i in range(num_blocks)
        )
        self.predictor = nn.Linear(channels, NUM_IUV_LOGITS)

    def forward(
        self, x_agg: Tensor, active: Tensor, region_masks: Tensor, region_image: Tensor
    ) -> Tensor:
        sites = SparseSites.from_mask(active)
        if self.norm == "image":
            region_masks, region_image = region_masks[:0], region_image[:0]
        regions = SiteRegions.from_masks(sites, region_masks, region_image)
        feats = gather_from_dense(x_agg, sites)  # [M, Cin]: X_fg = M_fg * X_agg at active sites
        if self.stem is not None:
            feats = self.stem(feats, sites, regions)
        for block in self.blocks:
            feats = block(feats, sites, regions)
        return scatter_to_dense(self.predictor(feats), sites)  # [B, 75, h, w]
