"""Property-based tests of the spectral convolution op: every CPU backend against the naive DFT.

Hypothesis draws the problem: 1 to 3 grid dimensions of odd and even sizes (1 point
included), ``n_modes`` from 1 to past the grid's Nyquist frequency (so modes are clipped),
output grids coarser, equal or finer, channel and batch counts, and the input dtype. The
oracle is :func:`naive_dft.naive_spectral_conv` in complex128 on the same (rounded) inputs;
forward and both gradients are compared with a tolerance per dtype, relative to the size of
the values compared. The examples are fixed per run (the 'ci' profile of conftest.py).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from naive_dft import naive_spectral_conv

from nol_fast.ops.spectral_conv import spectral_conv
from nol_fast.ops.spectral_conv.modes import kept_shape

# Per input dtype: (rtol, atol relative to the largest value compared). Low-precision inputs
# are computed in float32 and rounded to their dtype on the way out (and in, for gradients).
TOLERANCE = {
    torch.float64: (1e-9, 1e-11),
    torch.float32: (1e-4, 1e-5),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (4e-3, 4e-3),
}
MAX_SIZE = {1: 24, 2: 10, 3: 6}  # grid points per dimension, by number of dimensions


@st.composite
def problems(draw):
    """``(in_grid, out_grid, n_modes, batch, in_channels, out_channels, dtype, seed)``."""
    n_dims = draw(st.integers(1, 3))
    size = st.integers(1, MAX_SIZE[n_dims])
    in_grid = tuple(draw(size) for _ in range(n_dims))
    out_grid = tuple(draw(st.sampled_from([n, draw(size)])) for n in in_grid)
    n_modes = tuple(draw(st.integers(1, n + 2)) for n in in_grid)
    return (in_grid, out_grid, n_modes, draw(st.integers(1, 3)), draw(st.integers(1, 4)),
            draw(st.integers(1, 4)), draw(st.sampled_from(list(TOLERANCE))),
            draw(st.integers(0, 2**16)))


def check_against_oracle(backend, problem):
    in_grid, out_grid, n_modes, batch, cin, cout, dtype, seed = problem
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, *in_grid, generator=g).to(dtype)
    weight_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    w = torch.randn(cin, cout, *kept_shape(n_modes), generator=g, dtype=weight_dtype)
    probe = torch.randn(batch, cout, *out_grid, generator=g, dtype=torch.float64)
    x.requires_grad_(True)
    w.requires_grad_(True)
    y = spectral_conv(x, w, n_modes, out_grid, backend=backend)
    (y.double() * probe).sum().backward()

    x_ref = x.detach().double().requires_grad_(True)
    w_ref = w.detach().to(torch.complex128).requires_grad_(True)
    y_ref = naive_spectral_conv(x_ref, w_ref, n_modes, out_grid)
    # the op rounds the probe (its output gradient) to the output dtype
    (y_ref * probe.to(dtype).double()).sum().backward()

    assert y.shape == y_ref.shape and y.dtype == dtype
    assert x.grad.dtype == dtype and w.grad.dtype == weight_dtype
    rtol, atol = TOLERANCE[dtype]
    for got, want in ((y, y_ref), (x.grad, x_ref.grad), (w.grad, w_ref.grad)):
        scale = float(want.detach().abs().max()) if want.numel() else 0.0
        torch.testing.assert_close(got.to(want.dtype), want, rtol=rtol, atol=atol * scale + 1e-30)


# Coarser output grids that keep their Nyquist frequency, along the last and the other dims.
@example(((16,), (8,), (8,), 2, 3, 2, torch.float64, 0))
@example(((12, 16), (8, 10), (8, 10), 1, 2, 3, torch.float64, 1))
@example(((7, 9, 6), (4, 6, 4), (8, 10, 6), 2, 2, 2, torch.float32, 2))
@given(problem=problems())
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_backend_matches_naive_dft(backend, problem):
    check_against_oracle(backend, problem)

