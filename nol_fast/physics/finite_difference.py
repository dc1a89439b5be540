"""Finite-difference derivative operators on uniform grids, 2nd- or 4th-order accurate.

Fields are tensors of shape ``(batch, channels, *grid)`` with 1 to 3 grid dimensions; every
operator is batched over ``(batch, channels)``. Vector fields carry their components on an
axis after the channels, ``(batch, channels, n_dims, *grid)``: :func:`gradient` returns one,
:func:`divergence` and :func:`curl` take one.

Each grid dimension is periodic (the cell-start points ``x_i = i h`` of
:mod:`nol_fast.physics.grid`, wrapped around) or not (points on both ends). Interior points use
the central stencil; on a non-periodic dimension the first and last ``R`` points use one-sided
stencils of the same order of accuracy (:mod:`nol_fast.physics.stencils`), so a derivative is
defined on the whole grid and keeps its shape. The spacing ``h`` is explicit: ``L / n`` on a
periodic dimension of length ``L``, ``L / (n - 1)`` on one with both ends
(:meth:`nol_fast.physics.grid.Grid.spacing` computes it).

These plain-torch operators are differentiable and are the building blocks of the reference
residuals; the fused kernels of :mod:`nol_fast.ops` read the same stencil tables.

Examples
--------
>>> x = torch.linspace(0, 1, 33, dtype=torch.float64)
>>> u = (x**2).expand(1, 1, 33)
>>> du = derivative(u, -1, spacing=1 / 32)       # exact for a quadratic, ends included
>>> bool(torch.allclose(du[0, 0], 2 * x))
True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from nol_fast.physics.grid import grid_dims
from nol_fast.physics.stencils import stencil

__all__ = ["curl", "derivative", "divergence", "gradient", "laplacian"]

#: ``h`` (one for all grid dims or one per dim) and periodic flags (likewise)
Spacing = float | Sequence[float]
Periodic = bool | Sequence[bool]


def per_dim_spacing(spacing: Spacing, n_dims: int) -> tuple[float, ...]:
    """``spacing`` as ``n_dims`` finite positive floats, or a ``ValueError`` naming it."""
    values = tuple(spacing) if isinstance(spacing, Sequence) else (spacing,) * n_dims
    if len(values) != n_dims or not all(
        isinstance(h, numbers.Real) and not isinstance(h, bool) and math.isfinite(h) and h > 0
        for h in values
    ):
        raise ValueError(f"spacing must be one number > 0 or {n_dims} of them (one per grid "
                         f"dimension), got {spacing!r}")
    return tuple(float(h) for h in values)


def per_dim_periodic(periodic: Periodic, n_dims: int) -> tuple[bool, ...]:
    """``periodic`` as ``n_dims`` bools, or a ``ValueError`` naming it."""
    flags = tuple(periodic) if isinstance(periodic, Sequence) else (periodic,) * n_dims
    if len(flags) != n_dims or not all(isinstance(flag, bool) for flag in flags):
        raise ValueError(f"periodic must be a bool or {n_dims} bools (one per grid dimension), "
                         f"got {periodic!r}")
    return flags


def derivative(
    u: Tensor, dim: int, spacing: float, order: int = 1, accuracy: int = 2,
    periodic: bool = False,
) -> Tensor:
    """Derivative of order 1 or 2 of ``u`` along tensor dimension ``dim``.

    Parameters
    ----------
    u
        Any real tensor; ``dim`` is one of its dimensions (a grid dim, or a time axis).
    dim
        The dimension to differentiate along (negative counts from the end).
    spacing
        Grid spacing ``h`` along ``dim``.
    order
        1 (``du/dx``) or 2 (``d²u/dx²``).
    accuracy
        2 or 4: the error falls as ``h**accuracy``.
    periodic
        Wrap around the ends (central stencil everywhere) instead of one-sided stencils at
        the first and last ``R`` points.

    Returns
    -------
    Tensor
        ``u``'s shape.

    Examples
    --------
    >>> derivative(torch.arange(5.0) ** 2, 0, spacing=1.0, order=2)
    tensor([2., 2., 2., 2., 2.])
    """
    st = stencil(order, accuracy)
    (h,) = per_dim_spacing(spacing, 1)
    n, radius = u.shape[dim], st.radius
    dim = dim % u.ndim
    if periodic:
        if n < 2 * radius + 1:
            raise ValueError(f"a periodic stencil of accuracy {accuracy} needs at least "
                             f"{2 * radius + 1} points along dim {dim}, got {n}")
        # padded: u wrapped by R points on each side along dim
        padded = torch.cat([u.narrow(dim, n - radius, radius), u, u.narrow(dim, 0, radius)], dim)
        return _weighted_sum(padded, dim, st.interior, n) / h**order
    if n < st.width:
        raise ValueError(f"a one-sided stencil of accuracy {accuracy} (derivative order {order}) "
                         f"needs at least {st.width} points along dim {dim}, got {n}")
    interior = _weighted_sum(u, dim, st.interior, n - 2 * radius)
    edges = [_edge_rows(u.narrow(dim, start, st.width), dim, rows)
             for start, rows in ((0, st.left), (n - st.width, st.right))]
    return torch.cat([edges[0], interior, edges[1]], dim) / h**order


def _weighted_sum(u: Tensor, dim: int, weights: Sequence[float], length: int) -> Tensor:
    """``sum_s weights[s] * u[s : s + length]`` along ``dim`` (the stencil at every point)."""
    out = None
    for s, w in enumerate(weights):
        if w != 0.0:
            term = u.narrow(dim, s, length)
            out = term * w if out is None else torch.add(out, term, alpha=w)
    return out


def _edge_rows(block: Tensor, dim: int, rows: Sequence[Sequence[float]]) -> Tensor:
    """The one-sided rows: ``block`` holds the ``W`` points at one end along ``dim``."""
    weights = torch.tensor(rows, dtype=block.dtype, device=block.device)  # (R, W)
    return (block.movedim(dim, -1) @ weights.T).movedim(-1, dim)


def gradient(u: Tensor, spacing: Spacing, accuracy: int = 2, periodic: Periodic = False) -> Tensor:
    """Gradient ``(du/dx_1, ..., du/dx_d)`` of every channel.

    Parameters
    ----------
    u
        ``(batch, channels, *grid)``, 1 to 3 grid dims.
    spacing, periodic
        One value for every grid dim, or one per dim.
    accuracy
        2 or 4.

    Returns
    -------
    Tensor
        ``(batch, channels, n_dims, *grid)``.

    Examples
    --------
    >>> gradient(torch.zeros(2, 3, 8, 8), spacing=0.1).shape
    torch.Size([2, 3, 2, 8, 8])
    """
    n_dims = grid_dims(u, "u", vector=False)
    hs, flags = per_dim_spacing(spacing, n_dims), per_dim_periodic(periodic, n_dims)
    return torch.stack([derivative(u, 2 + k, hs[k], 1, accuracy, flags[k])
                        for k in range(n_dims)], dim=2)


def divergence(
    v: Tensor, spacing: Spacing, accuracy: int = 2, periodic: Periodic = False
) -> Tensor:
    """Divergence ``sum_k dv_k/dx_k`` of a vector field per channel.

    Parameters
    ----------
    v
        ``(batch, channels, n_dims, *grid)``: component ``k`` along axis 2.
    spacing, periodic, accuracy
        As in :func:`gradient`.

    Returns
    -------
    Tensor
        ``(batch, channels, *grid)``.

    Examples
    --------
    >>> divergence(torch.ones(1, 1, 2, 6, 6), spacing=0.2).abs().max().item()
    0.0
    """
    n_dims = grid_dims(v, "v", vector=True)
    hs, flags = per_dim_spacing(spacing, n_dims), per_dim_periodic(periodic, n_dims)
    terms = [derivative(v[:, :, k], 2 + k, hs[k], 1, accuracy, flags[k]) for k in range(n_dims)]
    return torch.stack(terms).sum(0)


def laplacian(u: Tensor, spacing: Spacing, accuracy: int = 2, periodic: Periodic = False) -> Tensor:
    """Laplacian ``sum_k d²u/dx_k²`` of every channel, from second-derivative stencils.

    Parameters
    ----------
    u
        ``(batch, channels, *grid)``, 1 to 3 grid dims.
    spacing, periodic, accuracy
        As in :func:`gradient`.

    Returns
    -------
    Tensor
        ``u``'s shape.

    Examples
    --------
    >>> laplacian(torch.zeros(1, 1, 6, 6, 6), spacing=0.5).shape
    torch.Size([1, 1, 6, 6, 6])
    """
    n_dims = grid_dims(u, "u", vector=False)
    hs, flags = per_dim_spacing(spacing, n_dims), per_dim_periodic(periodic, n_dims)
    terms = [derivative(u, 2 + k, hs[k], 2, accuracy, flags[k]) for k in range(n_dims)]
    return torch.stack(terms).sum(0)


def curl(v: Tensor, spacing: Spacing, accuracy: int = 2, periodic: Periodic = False) -> Tensor:
    """Curl of a 2-D or 3-D vector field per channel.

    Parameters
    ----------
    v
        ``(batch, channels, 2, nx, ny)`` or ``(batch, channels, 3, nx, ny, nz)``.
    spacing, periodic, accuracy
        As in :func:`gradient`.

    Returns
    -------
    Tensor
        2-D: the scalar ``dv_y/dx - dv_x/dy``, ``(batch, channels, nx, ny)``; 3-D: the vector
        ``(batch, channels, 3, nx, ny, nz)``.

    Examples
    --------
    >>> curl(torch.zeros(1, 1, 3, 5, 5, 5), spacing=0.25).shape
    torch.Size([1, 1, 3, 5, 5, 5])
    """
    n_dims = grid_dims(v, "v", vector=True)
    if n_dims == 1:
        raise ValueError(f"curl needs a 2-D or 3-D vector field, got shape {tuple(v.shape)}")
    hs, flags = per_dim_spacing(spacing, n_dims), per_dim_periodic(periodic, n_dims)

    def d(component: int, k: int) -> Tensor:  # d v_component / d x_k
        return derivative(v[:, :, component], 2 + k, hs[k], 1, accuracy, flags[k])

    if n_dims == 2:
        return d(1, 0) - d(0, 1)
    return torch.stack([d(2, 1) - d(1, 2), d(0, 2) - d(2, 0), d(1, 0) - d(0, 1)], dim=2)
