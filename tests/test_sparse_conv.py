"""Submanifold sparse conv: every backend equals a dense float64 conv on the masked input."""

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model.network.sparse import (
    SparseSites,
    SubmanifoldConv2d,
    gather_from_dense,
    resolve_backend,
    scatter_to_dense,
    set_backend,
)
from model.network.sparse.spconv_backend import spconv_supports
from model.network.sparse.torch_backend import submanifold_conv_torch

CPU = torch.device("cpu")
HAS_SPCONV = spconv_supports(CPU)
requires_spconv = pytest.mark.skipif(not HAS_SPCONV, reason="spconv is not importable")
BACKENDS = ["torch", pytest.param("spconv", marks=requires_spconv), "dense"]
RTOL = 1e-5


@pytest.fixture
def two_threads() -> Iterator[None]:
    """Run with 2 intra-op threads (spconv's CPU Native path races there unless pinned)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _border_mask() -> torch.Tensor:
    mask = torch.zeros(1, 6, 9, dtype=torch.bool)
    mask[0, [0, -1], :] = True
    mask[0, :, [0, -1]] = True
    return mask


def _single_site_mask() -> torch.Tensor:
    mask = torch.zeros(1, 5, 5, dtype=torch.bool)
    mask[0, 2, 3] = True
    return mask


MASKS = {
    "empty": lambda: torch.zeros(1, 6, 7, dtype=torch.bool),
    "full": lambda: torch.ones(1, 6, 7, dtype=torch.bool),
    "single_site": _single_site_mask,
    "border": _border_mask,
    "batch_of_two": lambda: torch.rand(2, 9, 11) < torch.tensor([0.3, 0.7])[:, None, None],
    "larger": lambda: torch.rand(2, 40, 50) < 0.3,
}


def assert_matches_reference(actual: torch.Tensor, reference: torch.Tensor) -> None:
    """Max abs error within RTOL of the reference's max abs value (float32 vs float64)."""
    assert actual.shape == reference.shape
    if reference.numel() == 0:
        return
    error = (actual.double() - reference).abs().max().item()
    scale = reference.abs().max().item()
    assert error <= RTOL * scale, f"max abs error {error:.3g} vs reference scale {scale:.3g}"


def _masked_input(mask: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense (B, C, H, W) float64 input that is zero outside ``mask``, and its (M, C) sites."""
    dense = torch.randn(mask.shape[0], channels, *mask.shape[1:], dtype=torch.float64)
    dense = dense * mask[:, None]
    return dense, dense.permute(0, 2, 3, 1)[mask]  # boolean indexing: (b, y, x) order


def _dense_reference(
    dense: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """(M, C_out) float64: ``F.conv2d`` of the masked input, read at the active sites."""
    out = F.conv2d(
        dense,
        weight.double().permute(0, 3, 1, 2),
        None if bias is None else bias.double(),
        padding=weight.shape[1] // 2,
    )
    return out.permute(0, 2, 3, 1)[mask]


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_backend_equals_dense_float64_reference(
    backend: str, mask_name: str, kernel_size: int
) -> None:
    mask = MASKS[mask_name]()
    sites = SparseSites.from_mask(mask)
    dense, feats = _masked_input(mask, channels=5)
    conv = SubmanifoldConv2d(5, 7, kernel_size=kernel_size, backend=backend)
    with torch.no_grad():
        conv.bias.normal_()
    reference = _dense_reference(dense, mask, conv.weight.detach(), conv.bias.detach())
    for _ in range(3):  # a thread race shows in some runs only
        with torch.no_grad():
            assert_matches_reference(conv(feats.float(), sites), reference)


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_is_exact_in_every_run_at_two_threads(backend: str) -> None:
    """Unpinned, spconv's CPU Native path got 60-80 % of these runs wrong (measured)."""
    mask = MASKS["larger"]()
    sites = SparseSites.from_mask(mask)
    dense, feats = _masked_input(mask, channels=32)
    conv = SubmanifoldConv2d(32, 32, backend=backend)
    reference = _dense_reference(dense, mask, conv.weight.detach(), conv.bias.detach())
    with torch.no_grad():
        for _ in range(30):
            assert_matches_reference(conv(feats.float(), sites), reference)
    assert torch.get_num_threads() == 2  # spconv's pinning is undone


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["torch", "dense", "auto"])
def test_backend_on_cuda_equals_cpu(backend: str) -> None:
    mask = MASKS["larger"]()
    sites = SparseSites.from_mask(mask)
    feats = torch.randn(len(sites), 8, requires_grad=True)
    conv = SubmanifoldConv2d(8, 6, backend=backend)
    cuda = torch.device("cuda")
    expected = submanifold_conv_torch(feats, conv.weight, conv.bias, sites)
    expected.sum().backward()
    expected_grads = [feats.grad, conv.weight.grad]
    feats_cuda = feats.detach().to(cuda).requires_grad_()
    conv.zero_grad()
    conv.to(cuda)
    out = conv(feats_cuda, sites.to(cuda))
    out.sum().backward()
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-4, atol=1e-4)
    for actual, wanted in zip([feats_cuda.grad, conv.weight.grad], expected_grads, strict=True):
        torch.testing.assert_close(actual.cpu(), wanted, rtol=1e-4, atol=1e-4)


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_without_bias(backend: str) -> None:
    mask = MASKS["batch_of_two"]()
    dense, feats = _masked_input(mask, channels=4)
    conv = SubmanifoldConv2d(4, 3, bias=False, backend=backend)
    assert conv.bias is None
    reference = _dense_reference(dense, mask, conv.weight.detach(), None)
    with torch.no_grad():
        assert_matches_reference(conv(feats.float(), SparseSites.from_mask(mask)), reference)


def test_comparison_rejects_centre_only_and_one_percent_error() -> None:
    mask = MASKS["larger"]()
    dense, _ = _masked_input(mask, channels=4)
    weight = torch.randn(6, 3, 3, 4)
    reference = _dense_reference(dense, mask, weight, None)
    centre_only = weight * F.one_hot(torch.tensor(4), 9).view(1, 3, 3, 1)
    with pytest.raises(AssertionError):
        assert_matches_reference(_dense_reference(dense, mask, centre_only, None), reference)
    with pytest.raises(AssertionError):
        assert_matches_reference(reference * 1.01, reference)
    assert_matches_reference(reference.float(), reference)


def test_torch_backend_gradcheck() -> None:
    mask = torch.rand(2, 4, 5) < 0.5
    sites = SparseSites.from_mask(mask)
    feats = torch.randn(len(sites), 2, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda f, w, b: submanifold_conv_torch(f, w, b, sites), (feats, weight, bias)
    )


@pytest.mark.usefixtures("two_threads")
def test_torch_backend_gradients_equal_dense_reference() -> None:
    mask = MASKS["larger"]()
    sites = SparseSites.from_mask(mask)
    _, feats = _masked_input(mask, channels=4)
    weight = torch.randn(6, 3, 3, 4, dtype=torch.float64)
    grad_out = torch.randn(len(sites), 6, dtype=torch.float64)

    def grads(conv_at_sites: object) -> tuple[torch.Tensor, torch.Tensor]:
        f = feats.clone().requires_grad_()
        w = weight.clone().requires_grad_()
        (conv_at_sites(f, w) * grad_out).sum().backward()  # type: ignore[operator]
        return f.grad, w.grad  # type: ignore[return-value]

    sparse = grads(lambda f, w: submanifold_conv_torch(f, w, None, sites))
    reference = grads(lambda f, w: _dense_reference(scatter_to_dense(f, sites), mask, w, None))
    for actual, expected in zip(sparse, reference, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@requires_spconv
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_spconv_cpu_backward_refuses_clearly() -> None:
    sites = SparseSites.from_mask(MASKS["full"]())
    conv = SubmanifoldConv2d(2, 2, backend="spconv")
    out = conv(torch.randn(len(sites), 2, requires_grad=True), sites)
    with pytest.raises(RuntimeError, match="backend 'torch'"):
        out.sum().backward()


@pytest.mark.usefixtures("two_threads")
def test_set_backend_switches_every_conv_with_same_result() -> None:
    mask = MASKS["batch_of_two"]()
    sites = SparseSites.from_mask(mask)
    feats = torch.randn(len(sites), 3)
    net = nn.ModuleList([SubmanifoldConv2d(3, 4), SubmanifoldConv2d(4, 2, kernel_size=5)])

    def run() -> torch.Tensor:
        with torch.no_grad():
            return net[1](net[0](feats, sites), sites)

    expected = run()
    for backend in ["dense", *(["spconv"] if HAS_SPCONV else []), "auto", "torch"]:
        set_backend(net, backend)
        assert all(conv.backend == backend for conv in net)
        torch.testing.assert_close(run(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameters_do_not_depend_on_backend(backend: str) -> None:
    reference = SubmanifoldConv2d(3, 4, kernel_size=3, backend="torch").state_dict()
    conv = SubmanifoldConv2d(3, 4, kernel_size=3, backend=backend)
    state = conv.state_dict()
    assert list(state) == ["weight", "bias"] == list(reference)
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in reference.items()}
    assert state["weight"].shape == (4, 3, 3, 3)  # (C_out, k, k, C_in)
    conv.load_state_dict(reference)


def test_resolve_backend() -> None:
    assert resolve_backend("auto", CPU) == "torch"
    assert resolve_backend("torch", CPU) == "torch"
    assert resolve_backend("dense", CPU) == "dense"
    if HAS_SPCONV:
        assert resolve_backend("spconv", CPU) == "spconv"
    else:
        with pytest.raises(ValueError, match="spconv"):
            resolve_backend("spconv", CPU)
    with pytest.raises(ValueError, match="must be one of"):
        resolve_backend("cudnn", CPU)


def test_bad_backend_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="must be one of"):
        SubmanifoldConv2d(2, 2, backend="sparse")
    with pytest.raises(ValueError, match="must be one of"):
        set_backend(SubmanifoldConv2d(2, 2), "sparse")


def test_forward_validates_features() -> None:
    sites = SparseSites.from_mask(MASKS["full"]())
    conv = SubmanifoldConv2d(3, 2)
    with pytest.raises(ValueError, match="sites"):
        conv(torch.randn(len(sites) + 1, 3), sites)
    with pytest.raises(ValueError, match="input channels"):
        conv(torch.randn(len(sites), 4), sites)
    with pytest.raises(ValueError, match="meta"):
        conv(torch.randn(len(sites), 3, device="meta"), sites)


def test_sites_from_mask_are_sorted_and_contiguous() -> None:
    mask = MASKS["batch_of_two"]()
    sites = SparseSites.from_mask(mask)
    assert sites.coords.is_contiguous() and sites.coords.dtype == torch.int64
    assert len(sites) == int(mask.sum())
    keys = (sites.coords * torch.tensor([10_000, 100, 1])).sum(1)
    assert bool((keys[1:] > keys[:-1]).all())
    with pytest.raises(ValueError, match="bool"):
        SparseSites.from_mask(mask.float())


def test_neighbour_table_matches_brute_force_and_is_cached() -> None:
    mask = torch.rand(2, 5, 6) < 0.5
    sites = SparseSites.from_mask(mask)
    table = sites.neighbours(3)
    index = {tuple(c): i for i, c in enumerate(sites.coords.tolist())}
    for i, (b, y, x) in enumerate(sites.coords.tolist()):
        for tap in range(9):
            dy, dx = tap // 3 - 1, tap % 3 - 1
            assert table[i, tap].item() == index.get((b, y + dy, x + dx), -1)
    assert sites.neighbours(3) is table


def test_scatter_gather_round_trip() -> None:
    mask = MASKS["batch_of_two"]()
    sites = SparseSites.from_mask(mask)
    feats = torch.randn(len(sites), 3)
    dense = scatter_to_dense(feats, sites)
    assert dense.shape == (2, 3, 9, 11)
    assert bool((dense.permute(0, 2, 3, 1)[~mask] == 0).all())
    torch.testing.assert_close(gather_from_dense(dense, sites), feats, rtol=0, atol=0)
    with pytest.raises(ValueError, match="B, C, H, W"):
        gather_from_dense(dense[:, :, :-1], sites)
