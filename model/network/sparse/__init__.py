"""Submanifold sparse convolution over the active sites of 2-D feature maps."""

from model.network.sparse.conv import BACKEND_NAMES, SubmanifoldConv2d, resolve_backend, set_backend
from model.network.sparse.sites import SparseSites, gather_from_dense, scatter_to_dense

__all__ = [
    "BACKEND_NAMES",
    "SparseSites",
    "SubmanifoldConv2d",
    "gather_from_dense",
    "resolve_backend",
    "scatter_to_dense",
    "set_backend",
]
