"""The bfloat16 GEMMs of the channels-last layers against float64 products.

``matmul_rows`` (a pointwise layer's GEMM and input-gradient GEMM) and the truncated DFTs'
shared-matrix products run on AMX tiles where the CPU has them, and on torch's GEMMs otherwise.
Both paths must give the exact product of the bfloat16 operands rounded once to bfloat16 (up to
float32 sums), on odd shapes, strided operands, and into existing outputs.
"""

from __future__ import annotations

import pytest
import torch

from nol_fast.ops.extension import amx_kernels
from nol_fast.ops.pointwise.cpu import matmul_rows
from nol_fast.ops.spectral_conv.cpu import _contract
from tests.conftest import AMX_PATHS, require_extension

# One bfloat16 rounding of the result (2^-9 relative, nearest) plus float32 sums and the
# rounding of the added value: a wrong or missing term is off by far more.
ROUNDING = 2.0 ** -8


def assert_rounded_once(got: torch.Tensor, exact: torch.Tensor, scale: torch.Tensor) -> None:
    assert got.dtype == torch.bfloat16 and got.shape == exact.shape
    assert ((got.double() - exact).abs() <= ROUNDING * exact.abs() + 1e-6 * scale).all()


@pytest.mark.parametrize("amx", AMX_PATHS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("rows", "k", "n"), [
    (1, 1, 1), (31, 3, 5), (33, 16, 32), (1000, 32, 16), (4099, 33, 17), (257, 70, 40),
    (130, 64, 48), (100, 6, 20),
])
def test_matmul_rows_is_the_product_rounded_once(rows, k, n, threads, amx):
    # odd shapes cut the 32-row blocks, the 32-deep steps and 16-column tiles of the AMX
    # kernel short (activations 32 or 64 wide, or an even width below 32, are read in place,
    # others packed first); the weight is a transposed view (the forward GEMM) or not (the
    # input gradient's), and the activation's rows lie further apart than their length
    require_extension()
    torch.manual_seed(rows + k + n)
    # on AMX the columns between the activation's rows hold infinities: a kernel reading past
    # a row's end would turn them into NaN. (torch's own bfloat16 mm does, in torch 2.13, so
    # the path without AMX gets finite values there.)
    gap = float("inf") if amx else 0.0
    storage = torch.full((rows, k + 3), gap, dtype=torch.bfloat16)
    a = storage[:, :k].copy_(torch.randn(rows, k))
    weight = torch.randn(n, k)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with amx_kernels(amx):
            forward = matmul_rows(a, weight.T)
            base = torch.randn(rows, n).bfloat16()
            added = matmul_rows(a, weight.T, out=base.clone(), add=True)
            into = torch.empty(rows, n, dtype=torch.bfloat16)
            written = matmul_rows(a, weight.T, out=into)
            g = torch.randn(rows, n).bfloat16()
            backward = matmul_rows(g, weight)
    finally:
        torch.set_num_threads(previous)
    w16 = weight.bfloat16().double()
    exact = a.double() @ w16.T
    scale = a.double().abs() @ w16.abs().T
    assert_rounded_once(forward, exact, scale)
    assert_rounded_once(added, base.double() + exact, scale + base.double().abs())
    assert written.data_ptr() == into.data_ptr()
    torch.testing.assert_close(written, forward, rtol=0, atol=0)
    assert_rounded_once(backward, g.double() @ w16, g.double().abs() @ w16.abs())


@pytest.mark.parametrize("amx", AMX_PATHS)
def test_matmul_rows_float32_is_torch_mm(amx):
    require_extension()
    a, weight = torch.randn(50, 7), torch.randn(9, 7)
    with amx_kernels(amx):
        torch.testing.assert_close(matmul_rows(a, weight.T), a @ weight.T, rtol=0, atol=0)


@pytest.mark.parametrize("amx", AMX_PATHS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("lead", "rows", "cols", "rest"), [
    (3, 5, 3, 9), (512, 18, 64, 32), (64, 64, 18, 32), (33, 40, 70, 17), (8, 34, 64, 288),
])
def test_shared_matrix_products_are_rounded_once(lead, rows, cols, rest, threads, amx):
    # the truncated DFTs' batched products out[l] = M @ t[l], M shared: analysis (M wide),
    # synthesis (M tall), odd sizes, and the adjoint's transposed matrix added into a gradient
    require_extension()
    torch.manual_seed(lead + rows + cols + rest)
    matrix = torch.randn(rows, cols).bfloat16()
    t = torch.randn(lead, cols, rest).bfloat16()
    grad = torch.randn(lead, rows, rest).bfloat16()
    base = torch.randn(lead, cols, rest).bfloat16()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with amx_kernels(amx):
            product = _contract(t, matrix, lead, rest)
            adjoint = _contract(grad, matrix.T, lead, rest, out=base.clone())
    finally:
        torch.set_num_threads(previous)
    m = matrix.double()
    assert_rounded_once(product, m @ t.double(), m.abs() @ t.double().abs())
    assert_rounded_once(adjoint, base.double() + m.T @ grad.double(),
                        base.double().abs() + m.abs().T @ grad.double().abs())
