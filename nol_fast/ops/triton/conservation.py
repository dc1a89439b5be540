"""The conserved integrals of a field in one pass, and their gradient, as Triton kernels.

For every ``(batch, channel)`` row of ``u`` and weight ``m`` (the sample's density row for the
rows marked ``weighted``, else 1) the forward kernel accumulates, over a chunk of the row,

``Σ m u``, ``Σ m u²`` and ``Σ x_k u`` (``x_k = i_k h_k``, the cell starts, computed from the
flat index),

and stores the chunk's ``2 + n_dims`` partial sums; the host adds the chunks in a fixed order.
The backward kernel writes ``grad_u = g_0 m + 2 g_1 m u + Σ_k g_{2+k} x_k``, and on a density
row adds ``Σ_c (g_0[c] u_c + g_1[c] u_c²)`` over the weighted rows ``c``: one pass over the
field either way. Loads are upcast to float32; the kernels run on CUDA tensors, or on CPU
tensors under the Triton interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

_BLOCK = 1024  # points per program: 4 KiB of float32 per load, 8 warps


@triton.jit
def _coordinates(index, n1, n2, h0, h1, h2):
    """Cell-start coordinates of the flat row-major ``index`` in a grid (n0, n1, n2)."""
    i2 = index % n2
    i1 = (index // n2) % n1
    i0 = index // (n1 * n2)
    return i0 * h0, i1 * h1, i2 * h2


@triton.jit
def _sums_kernel(
    u_ptr, weighted_ptr, partial_ptr, channels, n_points, density, n1, n2, h0, h1, h2,
    N_DIMS: tl.constexpr, BLOCK: tl.constexpr,
):
    # u: (batch, channels, n_points); partial: (rows, chunks, 2 + N_DIMS)
    row, chunk = tl.program_id(0), tl.program_id(1)
    index = chunk * BLOCK + tl.arange(0, BLOCK)
    ok = index < n_points
    u = tl.load(u_ptr + row.to(tl.int64) * n_points + index, mask=ok, other=0.0).to(tl.float32)
    m = tl.full((BLOCK,), 1.0, tl.float32)
    channel = row % channels
    if (density >= 0) & (tl.load(weighted_ptr + channel) != 0):  # m: the density row
        density_row = (row - channel + density).to(tl.int64)
        m = tl.load(u_ptr + density_row * n_points + index, mask=ok, other=0.0).to(tl.float32)
    x0, x1, x2 = _coordinates(index, n1, n2, h0, h1, h2)
    out = partial_ptr + (row * tl.num_programs(1) + chunk) * (2 + N_DIMS)
    tl.store(out, tl.sum(m * u, axis=0))
    tl.store(out + 1, tl.sum(m * u * u, axis=0))
    tl.store(out + 2, tl.sum(x0 * u, axis=0))
    if N_DIMS > 1:
        tl.store(out + 3, tl.sum(x1 * u, axis=0))
    if N_DIMS > 2:
        tl.store(out + 4, tl.sum(x2 * u, axis=0))


@triton.jit
def _sums_backward_kernel(
    grad_ptr, u_ptr, weighted_ptr, grad_u_ptr, channels, n_points, density, n1, n2, h0, h1, h2,
    N_DIMS: tl.constexpr, BLOCK: tl.constexpr,
):
    # grad: (batch, channels, 2 + N_DIMS) float32; u, grad_u: (batch, channels, n_points)
    row, chunk = tl.program_id(0), tl.program_id(1)
    index = chunk * BLOCK + tl.arange(0, BLOCK)
    ok = index < n_points
    u = tl.load(u_ptr + row.to(tl.int64) * n_points + index, mask=ok, other=0.0).to(tl.float32)
    g = grad_ptr + row * (2 + N_DIMS)
    x0, x1, x2 = _coordinates(index, n1, n2, h0, h1, h2)
    m = tl.full((BLOCK,), 1.0, tl.float32)
    channel = row % channels
    if (density >= 0) & (tl.load(weighted_ptr + channel) != 0):
        density_row = (row - channel + density).to(tl.int64)
        m = tl.load(u_ptr + density_row * n_points + index, mask=ok, other=0.0).to(tl.float32)
    grad = m * (tl.load(g) + 2.0 * tl.load(g + 1) * u) + tl.load(g + 2) * x0
    if N_DIMS > 1:
        grad += tl.load(g + 3) * x1
    if N_DIMS > 2:
        grad += tl.load(g + 4) * x2
    if channel == density:  # the density weighs the weighted rows of its sample
        first = row - channel
        for c in range(0, channels):
            if tl.load(weighted_ptr + c) != 0:
                other = tl.load(u_ptr + (first + c).to(tl.int64) * n_points + index, mask=ok,
                                other=0.0).to(tl.float32)
                gc = grad_ptr + (first + c) * (2 + N_DIMS)
                grad += tl.load(gc) * other + tl.load(gc + 1) * other * other
    tl.store(grad_u_ptr + row.to(tl.int64) * n_points + index, grad, mask=ok)


_INTERPRETED = isinstance(_sums_kernel, InterpretedFunction)


def _launch_args(u: torch.Tensor, weighted: torch.Tensor, spacing: Sequence[float]):
    if u.device.type != "cuda" and not _INTERPRETED:
        raise ValueError(f"the Triton conservation kernels need CUDA tensors, got device "
                         f"{u.device} (CPU tensors run only under TRITON_INTERPRET=1)")
    grid = tuple(u.shape[2:])
    if not 1 <= len(grid) <= 3 or weighted.shape != (u.shape[1],):
        raise ValueError(f"u must be (batch, channels, *grid) with 1 to 3 grid dims and "
                         f"weighted one flag per channel, got {tuple(u.shape)} and "
                         f"{tuple(weighted.shape)}")
    shape = (*grid, 1, 1)[:3]
    h = (*spacing, 0.0, 0.0)[:3]
    n_points = shape[0] * shape[1] * shape[2]
    launch = (u.shape[0] * u.shape[1], triton.cdiv(n_points, _BLOCK))
    return launch, n_points, shape, h


def conservation_sums(
    u: torch.Tensor, density: int, weighted: torch.Tensor, spacing: Sequence[float]
) -> torch.Tensor:
    """``(batch, channels, 2 + n_dims)`` float32 sums (see the module docstring).

    ``u`` is contiguous; ``weighted`` an int32 tensor of one flag per channel on ``u``'s
    device; ``density`` the density channel or -1.
    """
    launch, n_points, shape, h = _launch_args(u, weighted, spacing)
    n_dims = u.ndim - 2
    partial = torch.empty((*launch, 2 + n_dims), dtype=torch.float32, device=u.device)
    _sums_kernel[launch](u, weighted, partial, u.shape[1], n_points, density, shape[1],
                         shape[2], *h, N_DIMS=n_dims, BLOCK=_BLOCK, num_warps=8)
    return partial.sum(1).reshape(*u.shape[:2], 2 + n_dims)


def conservation_sums_backward(
    grad_sums: torch.Tensor, u: torch.Tensor, density: int, weighted: torch.Tensor,
    spacing: Sequence[float],
) -> torch.Tensor:
    """``grad_u`` (float32, ``u``'s shape) of :func:`conservation_sums`."""
    launch, n_points, shape, h = _launch_args(u, weighted, spacing)
    grad_u = torch.empty(u.shape, dtype=torch.float32, device=u.device)
    _sums_backward_kernel[launch](grad_sums.float().contiguous(), u, weighted, grad_u,
                                  u.shape[1], n_points, density, shape[1], shape[2], *h,
                                  N_DIMS=u.ndim - 2, BLOCK=_BLOCK, num_warps=8)
    return grad_u
