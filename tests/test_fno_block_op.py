"""The nol_fast::fno_block op: the fused CPU block against its plain-torch reference.

Every skip kind, with and without channel MLP, with and without activation (the last block),
on odd 1-D, 2-D and 3-D grids; forward and every gradient against the reference computed in
float64; bfloat16 within twice the error of torch's own bfloat16 computation of the reference.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from nol_fast.ops.fno_block import BlockParams, BlockSpec, fno_block
from nol_fast.ops.fno_block.spec import pack, unpack
from nol_fast.ops.spectral_conv.modes import kept_shape
from tests.conftest import require_extension

SKIP_KINDS = ["linear", "soft-gating", "identity", "none"]


@pytest.fixture(autouse=True)
def _extension():
    require_extension()


def make_params(channels, hidden, n_modes, fno_skip, mlp_skip, use_mlp, seed=0):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0, dtype=torch.float32):
        return torch.randn(*shape, generator=g, dtype=dtype) * scale

    def skip_weight(kind):
        if kind == "linear":
            return randn(channels, channels, scale=0.3)
        return randn(channels) if kind == "soft-gating" else None

    params = BlockParams(randn(channels, channels, *kept_shape(n_modes), dtype=torch.cfloat,
                               scale=0.3),
                         randn(channels, scale=0.1), skip_weight(fno_skip))
    if use_mlp:
        params.mlp_weights = (randn(hidden, channels, scale=0.3),
                              randn(channels, hidden, scale=0.3))
        params.mlp_biases = (randn(hidden, scale=0.1), randn(channels, scale=0.1))
        params.mlp_skip = skip_weight(mlp_skip)
    return params


def leaves_of(params, spec):
    return [t.requires_grad_() for t in pack(params, spec)]


def run(x, flat, spec, backend, grad_out):
    """Output and gradients (input first) of the block with parameters ``flat`` (the op's list)."""
    out = fno_block(x, unpack(flat, spec), spec, backend=backend)
    grads = torch.autograd.grad(out, [x, *flat], grad_out.to(out.dtype))
    return [out, *grads]


def as_float64(tensors):
    return [t.detach().double().requires_grad_() for t in tensors]


GRIDS = [((17,), (8,)), ((12, 9), (6, 5)), ((6, 5, 7), (4, 3, 4))]
COMBOS = [(f, m, a, u) for f, m, a, u in itertools.product(SKIP_KINDS, SKIP_KINDS,
                                                          ["gelu", "none"], [True, False])
          if u or m == "none"]


@pytest.mark.parametrize("grid,n_modes", GRIDS, ids=lambda v: "x".join(map(str, v)))
@pytest.mark.parametrize("fno_skip,mlp_skip,activation,use_mlp", COMBOS,
                         ids=["-".join(map(str, c)) for c in COMBOS])
def test_cpu_block_matches_float64_reference(grid, n_modes, fno_skip, mlp_skip, activation,
                                             use_mlp):
    channels, hidden = 5, 3
    spec = BlockSpec(n_modes, fno_skip, mlp_skip, activation, use_mlp)
    flat = leaves_of(make_params(channels, hidden, n_modes, fno_skip, mlp_skip, use_mlp), spec)
    x = torch.randn(3, *grid, channels, requires_grad=True)
    grad_out = torch.randn(3, *grid, channels)
    got = run(x, flat, spec, "cpu", grad_out)
    exact = run(*as_float64([x]), as_float64(flat), spec, "reference", grad_out.double())
    for g, e in zip(got, exact, strict=True):
        torch.testing.assert_close(g, e.to(g.dtype), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation", ["gelu", "relu", "silu", "tanh"])
def test_other_activations(activation):
    spec = BlockSpec((6, 5), "linear", "soft-gating", activation, True)
    flat = leaves_of(make_params(4, 2, (6, 5), "linear", "soft-gating", True), spec)
    x = torch.randn(2, 10, 11, 4, requires_grad=True)
    grad_out = torch.randn(2, 10, 11, 4)
    got = run(x, flat, spec, "cpu", grad_out)
    exact = run(*as_float64([x]), as_float64(flat), spec, "reference", grad_out.double())
    for g, e in zip(got, exact, strict=True):
        torch.testing.assert_close(g, e.to(g.dtype), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_block_on_two_threads_and_wide_layers(threads):
    # Enough rows for the kernels to split them between threads (the row reduction of the
    # weight gradients, the epilogues), with 37 channels, more than one 32-column block.
    spec = BlockSpec((6, 5), "linear", "linear", "gelu", True)
    flat = leaves_of(make_params(37, 6, (6, 5), "linear", "linear", True), spec)
    x = torch.randn(2, 23, 25, 37, requires_grad=True)
    grad_out = torch.randn(2, 23, 25, 37)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = run(x, flat, spec, "cpu", grad_out)
    finally:
        torch.set_num_threads(previous)
    exact = run(*as_float64([x]), as_float64(flat), spec, "reference", grad_out.double())
    for g, e in zip(got, exact, strict=True):
        torch.testing.assert_close(g, e.to(g.dtype), rtol=1e-4, atol=1e-4)


def relative(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("grid,n_modes", GRIDS[1:], ids=lambda v: "x".join(map(str, v)))
def test_bfloat16_within_twice_torch_error(grid, n_modes):
    # Errors against float64, averaged over three draws: a bias gradient is a sum of terms of
    # both signs, whose relative error from one draw is too noisy to compare.
    spec = BlockSpec(n_modes, "linear", "soft-gating", "gelu", True)
    ours_err, torch_err = torch.zeros(10), torch.zeros(10)
    for seed in range(3):
        flat = leaves_of(make_params(16, 8, n_modes, "linear", "soft-gating", True, seed=seed),
                         spec)
        g = torch.Generator().manual_seed(100 + seed)
        x = torch.randn(4, *grid, 16, generator=g).requires_grad_()
        grad_out = torch.randn(4, *grid, 16, generator=g)
        exact = run(*as_float64([x]), as_float64(flat), spec, "reference", grad_out.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours = run(x, flat, spec, "cpu", grad_out)
            torch_bf16 = run(x, flat, spec, "reference", grad_out)
        assert ours[0].dtype == torch.bfloat16
        assert all(g.dtype == p.dtype for g, p in zip(ours[1:], [x, *flat], strict=True))
        ours_err += torch.tensor([relative(o, e) for o, e in zip(ours, exact, strict=True)])
        torch_err += torch.tensor([relative(t, e) for t, e in zip(torch_bf16, exact,
                                                                  strict=True)])
    # output, grad_x, then one entry per parameter
    assert (ours_err <= 2 * torch_err).all(), (ours_err / torch_err).tolist()


def test_opcheck_and_no_grad():
    spec = BlockSpec((4, 4), "linear", "soft-gating", "gelu", True)
    flat = pack(make_params(3, 2, (4, 4), "linear", "soft-gating", True), spec)
    x = torch.randn(2, 7, 6, 3)
    torch.library.opcheck(torch.ops.nol_fast.fno_block.default,
                          (x, flat, [4, 4], "linear", "soft-gating", "gelu", True))
    with torch.no_grad():
        torch.testing.assert_close(fno_block(x, unpack(flat, spec), spec, backend="cpu"),
                                   fno_block(x, unpack(flat, spec), spec, backend="reference"),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_eager_path_matches_the_custom_op(dtype):
    # Eager calls bypass the dispatcher (EagerOp); torch.compile calls the custom op: both run
    # the same kernels, so output and gradients agree exactly.
    spec = BlockSpec((4, 4), "linear", "soft-gating", "gelu", True)
    flat = leaves_of(make_params(5, 3, (4, 4), "linear", "soft-gating", True), spec)
    x = torch.randn(2, 7, 6, 5, dtype=dtype, requires_grad=True)
    grad_out = torch.randn(2, 7, 6, 5, dtype=dtype)
    eager = run(x, flat, spec, "cpu", grad_out)
    out = torch.ops.nol_fast.fno_block(x, flat, [4, 4], "linear", "soft-gating", "gelu", True)[0]
    op = [out, *torch.autograd.grad(out, [x, *flat], grad_out)]
    for got, want in zip(eager, op, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_spec_rejects_unknown_skip():
    with pytest.raises(ValueError, match=r"fno_skip must be one of .* got 'gated'"):
        BlockSpec((4,), "gated", "none", "gelu", False)
