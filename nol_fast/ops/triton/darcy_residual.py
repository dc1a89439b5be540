"""The Darcy residual and its mean square in one pass, forward and backward, as Triton kernels.

``r = -(Dx(a Dx u) + Dy(a Dy u)) - f`` on 2-D planes, with ``D`` the first-derivative stencil
of :mod:`nol_fast.physics.stencils` (radius ``R``, ``W = 2R + 1`` taps; central inside, one-sided
rows at the first and last ``R`` points of a bounded axis, wrapped on a periodic one).

Taps
----
Point ``i`` of an axis reads points ``start(i) + s``, ``s < W``, with the weights of its row of
the stencil table: ``start(i) = clamp(i - R, 0, n - W)`` and row ``i`` (left edge), ``R``
(interior) or ``R + 1 + i - (n - R)`` (right edge) on a bounded axis; ``start(i) = i - R``
(modulo ``n``) and the interior row on a periodic one. The transposed stencil ``D^T`` at point
``i`` sums over the points ``k`` whose taps include ``i``: ``k = i + o`` for
``|o| <= W - 1``, each with the weight of tap ``s = i - start(k)`` when ``0 <= s < W``.

Kernels
-------
Each program takes a ``(BLOCK_X, BLOCK_Y)`` tile of one plane and computes everything of its
points from the inputs, recomputing the inner derivatives of its neighbours (``W²`` loads per
axis forward; ``(2W - 1)²`` backward, ``(2R + 1)²`` on a periodic axis) rather than writing
them to memory: the loads hit the cache, and the residual (or the gradients) are the only
stores. The forward pass also stores each tile's sum of ``r²``; the host adds them in a fixed
order, so the loss does not depend on scheduling.

Inputs are read as float32 right after loading (float16/bfloat16 accepted), and the kernels
run on CUDA tensors, or on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

_ACCEPTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@triton.jit
def _tap(i, s, n, R: tl.constexpr, W: tl.constexpr, PERIODIC: tl.constexpr):
    """(index read, table row) of tap ``s`` of point ``i`` along an axis of ``n`` points."""
    if PERIODIC:
        index = (i - R + s + n) % n
        row = tl.full(i.shape, R, tl.int32)
    else:
        start = tl.minimum(tl.maximum(i - R, 0), n - W)
        index = start + s
        row = tl.where(i < R, i, tl.where(i >= n - R, R + 1 + i - (n - R), R))
    return index, row


@triton.jit
def _transposed_tap(i, o, n, R: tl.constexpr, W: tl.constexpr, PERIODIC: tl.constexpr):
    """(point k = i + o, table row of k, tap s of k that reads i, valid) for ``D^T`` at ``i``.

    Where the tap is not valid, ``k``, the row and ``s`` are still in range (``k = i``,
    ``s = 0``), so every load stays inside its tensor; callers drop the term.
    """
    if PERIODIC:
        k = (i + o + n) % n
        row = tl.full(i.shape, R, tl.int32)
        s = tl.full(i.shape, R - o, tl.int32)
        valid = (s >= 0) & (s < W)
    else:
        k = i + o
        start = tl.minimum(tl.maximum(k - R, 0), n - W)
        s = i - start
        valid = (k >= 0) & (k < n) & (s >= 0) & (s < W)
        k = tl.where(valid, k, i)
        row = tl.where(k < R, k, tl.where(k >= n - R, R + 1 + k - (n - R), R))
    s = tl.where(valid, s, 0)
    return k, row, s, valid


@triton.jit
def _axis_flux_divergence(
    u_ptr, a_ptr, table_ptr, base, pos, n, other, stride,
    R: tl.constexpr, W: tl.constexpr, PERIODIC: tl.constexpr,
):
    """``D(a D u)`` along one axis at the points ``pos`` of it, weights at spacing 1.

    A point's address is ``base + index * stride + other``: ``stride`` is the axis' stride,
    ``other`` the offset along the other axis.
    """
    out = tl.zeros(pos.shape, tl.float32)
    for s in tl.static_range(W):
        p, row = _tap(pos, s, n, R, W, PERIODIC)  # outer tap: a point of the flux a D u
        du = tl.zeros(pos.shape, tl.float32)
        for t in tl.static_range(W):
            q, row_p = _tap(p, t, n, R, W, PERIODIC)
            du += tl.load(table_ptr + row_p * W + t) * tl.load(
                u_ptr + base + q * stride + other).to(tl.float32)
        a = tl.load(a_ptr + base + p * stride + other).to(tl.float32)
        out += tl.load(table_ptr + row * W + s) * a * du
    return out


@triton.jit
def _axis_derivative(u_ptr, table_ptr, base, pos, n, other, stride,
                     R: tl.constexpr, W: tl.constexpr, PERIODIC: tl.constexpr):
    """``D u`` along one axis at ``pos``, weights at spacing 1 (addresses as above)."""
    out = tl.zeros(pos.shape, tl.float32)
    for t in tl.static_range(W):
        q, row = _tap(pos, t, n, R, W, PERIODIC)
        out += tl.load(table_ptr + row * W + t) * tl.load(
            u_ptr + base + q * stride + other).to(tl.float32)
    return out


@triton.jit
def _axis_transposed(
    r_ptr, a_ptr, table_ptr, scale, base, pos, n, other, stride,
    R: tl.constexpr, W: tl.constexpr, PERIODIC: tl.constexpr,
):
    """``(D^T(a D^T g), D^T g)`` along one axis at ``pos``, ``g = scale r``, spacing 1.

    ``D^T g`` at a point sums over the points whose taps read it (``_transposed_tap``); a
    periodic axis has only the ``2R + 1`` central ones, a bounded one ``2W - 1``.
    """
    REACH: tl.constexpr = R if PERIODIC else W - 1
    out = tl.zeros(pos.shape, tl.float32)
    h_here = tl.zeros(pos.shape, tl.float32)
    for o1 in tl.static_range(2 * REACH + 1):
        k, row_k, s_k, ok_k = _transposed_tap(pos, o1 - REACH, n, R, W, PERIODIC)
        h = tl.zeros(pos.shape, tl.float32)  # D^T g at point k
        for o2 in tl.static_range(2 * REACH + 1):
            m, row_m, s_m, ok_m = _transposed_tap(k, o2 - REACH, n, R, W, PERIODIC)
            g = scale * tl.load(r_ptr + base + m * stride + other).to(tl.float32)
            h += tl.where(ok_m, tl.load(table_ptr + row_m * W + s_m) * g, 0.0)
        a = tl.load(a_ptr + base + k * stride + other).to(tl.float32)
        out += tl.where(ok_k, tl.load(table_ptr + row_k * W + s_k) * a * h, 0.0)
        if o1 == REACH:  # k is the point itself
            h_here = h
    return out, h_here


@triton.jit
def _darcy_forward_kernel(
    u_ptr, a_ptr, f_ptr, r_ptr, partial_ptr, table_ptr, f_value, inv_hx, inv_hy, nx, ny,
    HAS_F: tl.constexpr, PERIODIC_X: tl.constexpr, PERIODIC_Y: tl.constexpr, R: tl.constexpr,
    W: tl.constexpr, BLOCK_X: tl.constexpr, BLOCK_Y: tl.constexpr,
):
    """r on one tile, and the tile's sum of r² at ``partial[program]``."""
    # u, a, f, r: (planes, nx, ny) contiguous; table: (2R + 1, W) float32
    plane, tile_x, tile_y = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    base = plane.to(tl.int64) * nx * ny
    i = tile_x * BLOCK_X + tl.arange(0, BLOCK_X)[:, None]  # (BLOCK_X, 1)
    j = tile_y * BLOCK_Y + tl.arange(0, BLOCK_Y)[None, :]  # (1, BLOCK_Y)
    inside = (i < nx) & (j < ny)
    ic = tl.minimum(i, nx - 1) + 0 * j  # clamped, so every address is in the plane
    jc = tl.minimum(j, ny - 1) + 0 * i  # (both broadcast to the tile)
    # Weights at spacing 1: each axis' part takes 1/h² once, here.
    div = (_axis_flux_divergence(u_ptr, a_ptr, table_ptr, base, ic, nx, jc, ny, R, W,
                                 PERIODIC_X) * (inv_hx * inv_hx)
           + _axis_flux_divergence(u_ptr, a_ptr, table_ptr, base, jc, ny, ic * ny, 1, R, W,
                                   PERIODIC_Y) * (inv_hy * inv_hy))
    if HAS_F:  # noqa: SIM108 (a compile-time branch, in the statement form the kernels use)
        f = tl.load(f_ptr + base + ic * ny + jc).to(tl.float32)
    else:
        f = f_value
    r = -div - f
    tl.store(r_ptr + base + i * ny + j, r, mask=inside)
    r = tl.where(inside, r, 0.0)
    program = (plane * tl.num_programs(1) + tile_x) * tl.num_programs(2) + tile_y
    tl.store(partial_ptr + program, tl.sum(tl.sum(r * r, axis=1), axis=0))


@triton.jit
def _darcy_backward_kernel(
    grad_loss_ptr, r_ptr, u_ptr, a_ptr, grad_u_ptr, grad_a_ptr, grad_f_ptr, table_ptr,
    inv_hx, inv_hy, nx, ny, n_total,
    NEED_F: tl.constexpr, PERIODIC_X: tl.constexpr, PERIODIC_Y: tl.constexpr, R: tl.constexpr,
    W: tl.constexpr, BLOCK_X: tl.constexpr, BLOCK_Y: tl.constexpr,
):
    """grad_u, grad_a (and grad_f) on one tile, with g = 2 grad_loss r / n_total."""
    plane, tile_x, tile_y = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    base = plane.to(tl.int64) * nx * ny
    i = tile_x * BLOCK_X + tl.arange(0, BLOCK_X)[:, None]
    j = tile_y * BLOCK_Y + tl.arange(0, BLOCK_Y)[None, :]
    inside = (i < nx) & (j < ny)
    ic = tl.minimum(i, nx - 1) + 0 * j
    jc = tl.minimum(j, ny - 1) + 0 * i
    scale = 2.0 * tl.load(grad_loss_ptr).to(tl.float32) / n_total
    # grad_u = -(Dx^T(a Dx^T g) + Dy^T(a Dy^T g)); weights at spacing 1, 1/h² per axis here
    gu_x, hx = _axis_transposed(r_ptr, a_ptr, table_ptr, scale, base, ic, nx, jc, ny, R, W,
                                PERIODIC_X)
    gu_y, hy = _axis_transposed(r_ptr, a_ptr, table_ptr, scale, base, jc, ny, ic * ny, 1, R, W,
                                PERIODIC_Y)
    grad_u = -(gu_x * (inv_hx * inv_hx) + gu_y * (inv_hy * inv_hy))
    # grad_a = -(Dx u Dx^T g + Dy u Dy^T g) at the tile's points
    dudx = _axis_derivative(u_ptr, table_ptr, base, ic, nx, jc, ny, R, W, PERIODIC_X)
    dudy = _axis_derivative(u_ptr, table_ptr, base, jc, ny, ic * ny, 1, R, W, PERIODIC_Y)
    grad_a = -(dudx * hx * (inv_hx * inv_hx) + dudy * hy * (inv_hy * inv_hy))
    offsets = base + i * ny + j
    tl.store(grad_u_ptr + offsets, grad_u, mask=inside)
    tl.store(grad_a_ptr + offsets, grad_a, mask=inside)
    if NEED_F:
        g = scale * tl.load(r_ptr + base + ic * ny + jc).to(tl.float32)
        tl.store(grad_f_ptr + offsets, -g, mask=inside)


_INTERPRETED = isinstance(_darcy_forward_kernel, InterpretedFunction)


def _check(device: torch.device, **tensors: torch.Tensor | None) -> None:
    """Raise unless the tensors share ``device`` (CUDA, or any under the interpreter)."""
    if device.type != "cuda" and not _INTERPRETED:
        raise ValueError(
            f"the Triton Darcy kernels need CUDA tensors, got device {device} (CPU tensors run "
            "only under the Triton interpreter, TRITON_INTERPRET=1)"
        )
    for name, t in tensors.items():
        if t is not None and (t.device != device or t.dtype not in _ACCEPTED_DTYPES):
            raise ValueError(f"{name} must be a float32, bfloat16 or float16 tensor on {device}, "
                             f"got {t.dtype} on {t.device}")


def _launch(u: torch.Tensor, table: torch.Tensor, periodic: Sequence[bool]) -> tuple[tuple, dict]:
    """The program grid and the compile-time arguments shared by both kernels.

    Tile of one program: 16 x 64 points. Along y, 64 contiguous floats per row make full
    256-byte lines for every load; along x, 16 rows keep the halo rows the inner stencils read
    (2R above and below) a small share of the loads. Smaller grids take one tile per plane.
    """
    nx, ny = u.shape[-2:]
    block_x, block_y = min(16, triton.next_power_of_2(nx)), min(64, triton.next_power_of_2(ny))
    grid = (u.numel() // (nx * ny), triton.cdiv(nx, block_x), triton.cdiv(ny, block_y))
    constants = {"PERIODIC_X": bool(periodic[0]), "PERIODIC_Y": bool(periodic[1]),
                 "R": (table.shape[1] - 1) // 2, "W": table.shape[1], "BLOCK_X": block_x,
                 "BLOCK_Y": block_y, "num_warps": 4}
    return grid, constants


def darcy_forward(
    u: torch.Tensor, a: torch.Tensor, f: torch.Tensor | None, f_value: float,
    spacing: Sequence[float], periodic: Sequence[bool], table: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean(r²), r)`` for ``u``, ``a`` (and ``f``) of one shape ``(..., nx, ny)``.

    Parameters
    ----------
    u, a, f
        Contiguous, float32/bfloat16/float16; ``f`` ``None`` uses ``f_value`` everywhere.
    spacing, periodic
        ``(hx, hy)`` and ``(periodic_x, periodic_y)``.
    table
        The first-derivative stencil's ``(2R + 1, W)`` table, float32, on ``u``'s device.

    Returns
    -------
    loss : torch.Tensor
        0-dim float32.
    r : torch.Tensor
        ``u``'s shape, float32.
    """
    _check(u.device, u=u, a=a, f=f)
    grid, constants = _launch(u, table, periodic)
    r = torch.empty(u.shape, dtype=torch.float32, device=u.device)
    partial = torch.empty(grid[0] * grid[1] * grid[2], dtype=torch.float32, device=u.device)
    _darcy_forward_kernel[grid](
        u, a, f if f is not None else u, r, partial, table, float(f_value), 1.0 / spacing[0],
        1.0 / spacing[1], *u.shape[-2:], HAS_F=f is not None, **constants,
    )
    return partial.sum() / r.numel(), r


def darcy_backward(
    grad_loss: torch.Tensor, r: torch.Tensor, u: torch.Tensor, a: torch.Tensor,
    spacing: Sequence[float], periodic: Sequence[bool], table: torch.Tensor, need_f: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(grad_u, grad_a, grad_f)`` of :func:`darcy_forward`'s loss, float32.

    ``grad_f = -2 grad_loss r / N`` is empty unless ``need_f``.
    """
    _check(u.device, r=r, u=u, a=a)
    grid, constants = _launch(u, table, periodic)
    grad_u = torch.empty(u.shape, dtype=torch.float32, device=u.device)
    grad_a = torch.empty(u.shape, dtype=torch.float32, device=u.device)
    grad_f = torch.empty(u.shape if need_f else 0, dtype=torch.float32, device=u.device)
    _darcy_backward_kernel[grid](
        grad_loss.reshape(()).float(), r, u, a, grad_u, grad_a, grad_f if need_f else grad_u,
        table, 1.0 / spacing[0], 1.0 / spacing[1], *u.shape[-2:], r.numel(), NEED_F=need_f,
        **constants,
    )
    return grad_u, grad_a, grad_f
