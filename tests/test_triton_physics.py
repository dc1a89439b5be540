"""The Triton Darcy residual and conservation kernels against their references, on the CPU.

The kernels run under the Triton interpreter, which must be switched on before they are first
imported; the module is skipped when Triton is missing or when the kernels were already imported
for the GPU in this process. The interpreter spends tens of milliseconds per program and
per unrolled stencil tap, so the grids are small and odd, a plane is one program, and the
cases cover both boundary kinds on each axis, accuracy 2 and 4, a forcing tensor and a number,
reduced-precision inputs, several tiles, and every grid rank and channel layout of the
conservation sums.
"""

from __future__ import annotations

import pytest
import torch
from triton_interpreter import require_interpreter

require_interpreter()  # before triton, and the kernels, are first imported


from nol_fast.ops.conservation import cuda as conservation_cuda  # noqa: E402
from nol_fast.ops.conservation import reference as conservation_reference  # noqa: E402
from nol_fast.ops.darcy_residual import cuda as darcy_cuda  # noqa: E402
from nol_fast.ops.darcy_residual import reference as darcy_reference  # noqa: E402
from nol_fast.ops.triton import darcy_residual  # noqa: E402

SPACING = (0.6, 0.7)


def _darcy_case(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(shape, generator=g)
    a = torch.rand(shape, generator=g) + 0.5
    f = torch.randn(shape, generator=g)
    return u.to(dtype), a.to(dtype), f.to(dtype)


@pytest.mark.parametrize(
    ("shape", "periodic", "accuracy", "with_f"),
    [((1, 1, 11, 13), (False, False), 4, True), ((1, 1, 9, 7), (True, False), 2, False),
     ((1, 1, 6, 10), (False, True), 4, False), ((2, 1, 5, 5), (True, True), 2, True),
     ((1, 1, 18, 67), (False, False), 2, True)],
    ids=["bounded4", "periodic_x", "periodic_y4", "periodic_both", "several_tiles"],
)
def test_darcy_kernels_match_reference(shape, periodic, accuracy, with_f):
    u, a, f = _darcy_case(shape)
    f = f if with_f else None
    loss, r = darcy_cuda.cuda_forward(u, a, f, 0.3, SPACING, periodic, accuracy)
    want_loss, want_r = darcy_reference.reference_forward(u, a, f, 0.3, SPACING, periodic,
                                                          accuracy)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r, want_r, rtol=1e-5, atol=1e-4)
    grad_loss = torch.tensor(1.7)
    got = darcy_cuda.cuda_backward(grad_loss, r, u, a, SPACING, periodic, accuracy, with_f)
    want = darcy_reference.reference_backward(grad_loss, want_r, u, a, SPACING, periodic,
                                              accuracy, with_f)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape  # grad_f is empty without a forcing tensor
        scale = w.abs().max().item() if w.numel() else 0.0
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_darcy_kernels_upcast_reduced_precision(dtype):
    # Loads are upcast at once: the result is the float32 computation on the rounded inputs.
    u, a, _ = _darcy_case((1, 1, 8, 9), dtype, seed=1)
    loss, r = darcy_residual.darcy_forward(u, a, None, 1.0, SPACING, (False, False),
                                           darcy_cuda._table(2, u.device))
    want_loss, want_r = darcy_reference.reference_forward(u.float(), a.float(), None, 1.0,
                                                          SPACING, (False, False), 2)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r, want_r, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("shape", "density", "weighted"),
                         [((2, 3, 7, 5), 0, (False, True, True)), ((1, 2, 9), -1, (False, False)),
                          ((2, 4, 3, 4, 5), 3, (True, False, True, False)),
                          ((1, 1, 1100), -1, (False,))],
                         ids=["fluid_2d", "scalar_1d", "fluid_3d", "two_chunks"])
def test_conservation_kernels_match_reference(shape, density, weighted):
    u = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    spacing = [0.1 * (k + 1) for k in range(len(shape) - 2)]
    sums = conservation_cuda.cuda_sums(u, density, weighted, spacing)
    want = conservation_reference.reference_sums(u, density, weighted, spacing)
    torch.testing.assert_close(sums, want, rtol=1e-5, atol=1e-4)
    g = torch.randn_like(want)
    torch.testing.assert_close(
        conservation_cuda.cuda_sums_backward(g, u, density, weighted, spacing),
        conservation_reference.reference_sums_backward(g, u, density, weighted, spacing),
        rtol=1e-5, atol=1e-5)
