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

A :class:`Grid` records how a field was sampled, per dimension (periodic cell starts or both
ends) and in time (the step between records), for the PDE residuals of
:mod:`nol_fast.physics.residuals`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Grid",
    "cell_volume",
    "domain_lengths",
    "grid_dims",
    "grid_spacing",
    "uniform_grid",
]


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


def grid_dims(field: Tensor, name: str, vector: bool = False) -> int:
    """Number of grid dims of a field, or a ``ValueError`` that shows its shape.

    A scalar field is ``(batch, channels, *grid)``, a vector field
    ``(batch, channels, n_dims, *grid)`` (one component per grid dim); 1 to 3 grid dims.

    Examples
    --------
    >>> grid_dims(torch.zeros(4, 2, 2, 16, 16), "v", vector=True)
    2
    """
    lead = 3 if vector else 2
    n_dims = field.ndim - lead
    layout = "(batch, channels, n_dims, *grid)" if vector else "(batch, channels, *grid)"
    if not 1 <= n_dims <= 3 or (vector and field.shape[2] != n_dims):
        raise ValueError(f"{name} must have shape {layout} with 1, 2 or 3 grid dims, got shape "
                         f"{tuple(field.shape)}")
    return n_dims


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


@dataclass(frozen=True)
class Grid:
    """How a field's samples sit in space, and its records in time.

    Parameters
    ----------
    domain
        Length ``L`` of every spatial dimension, or one length per dimension.
    periodic
        Per dimension (or one flag for all): ``True`` for the periodic cell starts
        ``x_i = i L / n`` (spacing ``L / n``), ``False`` for points on both ends,
        ``x_i = i L / (n - 1)`` (spacing ``L / (n - 1)``), as Darcy's nodes.
    dt
        Time between consecutive records of a time-dependent field (its channels), or
        ``None`` for a field without a time axis.

    Examples
    --------
    >>> Grid(periodic=False).spacing((5, 5))
    (0.25, 0.25)
    >>> Grid(domain=2.0, dt=0.1).spacing((8,))
    (0.25,)
    """

    domain: float | tuple[float, ...] = 1.0
    periodic: bool | tuple[bool, ...] = True
    dt: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.domain, Sequence):
            object.__setattr__(self, "domain", domain_lengths(self.domain, len(self.domain)))
        else:
            domain_lengths(self.domain, 1)
        flags = self.periodic if isinstance(self.periodic, Sequence) else (self.periodic,)
        if not flags or not all(isinstance(flag, bool) for flag in flags):
            raise ValueError(f"periodic must be a bool or a sequence of bools, got "
                             f"{self.periodic!r}")
        if isinstance(self.periodic, Sequence):
            object.__setattr__(self, "periodic", tuple(self.periodic))
        if self.dt is not None and (
            isinstance(self.dt, bool) or not isinstance(self.dt, numbers.Real)
            or not math.isfinite(self.dt) or self.dt <= 0
        ):
            raise ValueError(f"dt must be a finite number > 0 or None, got {self.dt!r}")

    def lengths(self, n_dims: int) -> tuple[float, ...]:
        """Domain length of each of ``n_dims`` spatial dimensions."""
        return domain_lengths(self.domain, n_dims)

    def periodicity(self, n_dims: int) -> tuple[bool, ...]:
        """Whether each of ``n_dims`` spatial dimensions is periodic."""
        if not isinstance(self.periodic, tuple):
            return (self.periodic,) * n_dims
        if len(self.periodic) != n_dims:
            raise ValueError(f"periodic must be one flag or {n_dims} flags (one per grid "
                             f"dimension), got {self.periodic!r}")
        return self.periodic

    def spacing(self, spatial_shape: Sequence[int]) -> tuple[float, ...]:
        """Spacing of the points along each dimension of a field of this spatial shape."""
        shape = _check_shape(spatial_shape)
        flags = self.periodicity(len(shape))
        for n, periodic in zip(shape, flags, strict=True):
            if not periodic and n < 2:
                raise ValueError(f"a non-periodic dimension needs at least 2 points, got "
                                 f"spatial shape {shape}")
        return tuple(length / (n if periodic else n - 1) for length, n, periodic
                     in zip(self.lengths(len(shape)), shape, flags, strict=True))
