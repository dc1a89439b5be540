"""Uniform grids on which the library's PDE fields live.

Neural-operator data is sampled on uniform, usually periodic, grids: a field of shape
``(batch, channels, n_1, ..., n_d)`` holds the values ``u(x)`` at the points of a grid on the
box ``[0, L_1) x ... x [0, L_d)``. The physics-informed losses, and the derivative operators
and PDE residuals built on them, need the coordinates of those points and the volume of one
cell; this module is the single place that defines both.

Convention
----------
A periodic grid with ``n`` points along a dimension of length ``L`` has spacing
``h = L / n`` and points ``x_i = i * h`` for ``i = 0, ..., n - 1``: the *start* of each
cell, so ``0`` is on the grid and ``L`` (the same point as ``0`` by periodicity) is not. This
is the layout that the discrete Fourier transform assumes. With ``endpoint=True`` the points
are instead ``x_i = i * L / (n - 1)``, covering both ends of a non-periodic interval.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["cell_volume", "domain_lengths", "grid_spacing", "uniform_grid"]


def _check_shape(spatial_shape: Sequence[int]) -> tuple[int, ...]:
    """Return ``spatial_shape`` as a tuple of positive ints, or raise a ValueError."""
    shape = tuple(spatial_shape)
    if not shape or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
    ):
        raise ValueError(
            f"spatial_shape must be a non-empty sequence of positive ints, got {spatial_shape!r}"
        )
    return shape


def domain_lengths(domain: float | Sequence[float], n_dims: int) -> tuple[float, ...]:
    """Length of each of the ``n_dims`` dimensions of ``domain``.

    Parameters
    ----------
    domain
        One length shared by every dimension, or one length per dimension.
    n_dims
        Number of grid dimensions.

    Returns
    -------
    tuple of float
        ``n_dims`` finite, positive lengths.

    Examples
    --------
    >>> domain_lengths(2.0, 3)
    (2.0, 2.0, 2.0)
    """
    if isinstance(domain, numbers.Real):
        lengths = (domain,) * n_dims
    elif isinstance(domain, Sequence) and not isinstance(domain, str):
        lengths = tuple(domain)
    else:
        raise TypeError(f"domain must be a length or a sequence of lengths, got {domain!r}")
    if len(lengths) != n_dims:
        raise ValueError(
            f"domain must be one length or {n_dims} lengths (one per grid dimension), "
            f"got {domain!r}"
        )
    for length in lengths:
        if (
            not isinstance(length, numbers.Real)
            or isinstance(length, bool)
            or not math.isfinite(length)
            or length <= 0
        ):
            raise ValueError(f"domain lengths must be finite numbers > 0, got {domain!r}")
    return tuple(float(length) for length in lengths)


def grid_spacing(
    spatial_shape: Sequence[int], domain: float | Sequence[float] = 1.0
) -> tuple[float, ...]:
    """Spacing ``h_k = L_k / n_k`` of a periodic uniform grid along each dimension.

    Parameters
    ----------
    spatial_shape
        Number of points per dimension, ``(n_1, ..., n_d)``.
    domain
        Length ``L`` of every dimension, or one length per dimension.

    Returns
    -------
    tuple of float
        One spacing per dimension.

    Examples
    --------
    >>> grid_spacing((4, 8), domain=(1.0, 2.0))
    (0.25, 0.25)
    """
    shape = _check_shape(spatial_shape)
    lengths = domain_lengths(domain, len(shape))
    return tuple(length / n for length, n in zip(lengths, shape, strict=True))


def cell_volume(spatial_shape: Sequence[int], domain: float | Sequence[float] = 1.0) -> float:
    """Volume ``h_1 * ... * h_d`` of one cell of a periodic uniform grid.

    ``sum(u) * cell_volume(u.shape, domain)`` is the Riemann sum of ``u`` over the domain,
    which equals ``mean(u) * L_1 * ... * L_d``.

    Parameters
    ----------
    spatial_shape
        Number of points per dimension, ``(n_1, ..., n_d)``.
    domain
        Length ``L`` of every dimension, or one length per dimension.

    Returns
    -------
    float
        The cell volume (a length in 1-D, an area in 2-D).

    Examples
    --------
    >>> cell_volume((4, 4))
    0.0625
    """
    return math.prod(grid_spacing(spatial_shape, domain))


def uniform_grid(
    spatial_shape: Sequence[int],
    domain: float | Sequence[float] = 1.0,
    endpoint: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Coordinates of the points of a uniform grid on ``[0, L_1) x ... x [0, L_d)``.

    With ``endpoint=False`` (the default, for periodic fields) the points are the cell starts
    ``x_i = i * L / n``; with ``endpoint=True`` they are ``x_i = i * L / (n - 1)``, so both
    ``0`` and ``L`` are included (a single point sits at ``0``).

    Parameters
    ----------
    spatial_shape
        Number of points per dimension, ``(n_1, ..., n_d)``.
    domain
        Length ``L`` of every dimension, or one length per dimension.
    endpoint
        Whether the last point of each dimension is ``L``.
    device, dtype
        Of the returned tensor; ``dtype`` defaults to ``torch.get_default_dtype()``.

    Returns
    -------
    Tensor
        Shape ``(n_1, ..., n_d, d)``; ``grid[i_1, ..., i_d, k]`` is the ``k``-th coordinate
        of point ``(i_1, ..., i_d)`` (``'ij'`` indexing: dimension ``k`` of the grid varies
        along axis ``k`` of the tensor).

    Examples
    --------
    >>> uniform_grid((4,))[:, 0]
    tensor([0.0000, 0.2500, 0.5000, 0.7500])
    >>> uniform_grid((2, 3), domain=(1.0, 3.0)).shape
    torch.Size([2, 3, 2])
    """
    shape = _check_shape(spatial_shape)
    lengths = domain_lengths(domain, len(shape))
    dtype = dtype or torch.get_default_dtype()
    axes = []
    for n, length in zip(shape, lengths, strict=True):
        step = length / max(n - 1, 1) if endpoint else length / n
        axes.append(torch.arange(n, device=device, dtype=dtype) * step)
    # grid: (*spatial_shape, n_dims)
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
