"""Pointwise PDE residuals of the standard neural-operator benchmarks.

Each residual is a function ``residual(u, inputs, grid, **parameters) -> r`` that composes the
derivative operators of :mod:`nol_fast.physics.spectral` and
:mod:`nol_fast.physics.finite_difference`; ``r`` is zero where ``u`` solves the PDE (up to the
discretisation error). These compositions are also the references that the fused residual
kernels of :mod:`nol_fast.ops` are tested against.

Layout
------
``u`` is the model's prediction, ``(batch, channels, *grid)``; ``grid`` is a
:class:`~nol_fast.physics.grid.Grid` (domain lengths, periodicity, time step).

* **Time-dependent residuals** (heat, wave, Burgers, Navier–Stokes) read the channels of ``u``
  as *records*: the field at ``T`` times ``grid.dt`` apart, the layout of the time-series
  datasets (a Navier–Stokes target holds ``horizon`` steps, a Burgers target ``n_records``).
  ``inputs``, when given, holds the records just before them at the same spacing (a history,
  or the initial condition). The time derivative at each record of ``u`` is the
  finite-difference derivative along the record axis ``[inputs, u]`` (central inside,
  one-sided at the ends, order ``accuracy``); the residual is evaluated at the records of
  ``u`` only and has ``u``'s shape. With ``grid.dt=None`` the time derivative is left out
  (the steady equation). Space is periodic and differentiated spectrally.
* **Darcy** is steady: ``u`` is the pressure, channel ``coefficient_channel`` of ``inputs``
  the coefficient ``a``; space is differentiated by finite differences, periodic or not.

``forcing`` is a number or a tensor that broadcasts against ``u``, for instance ``(nx, ny)``.

Examples
--------
>>> from nol_fast.physics.grid import Grid
>>> x = torch.arange(32, dtype=torch.float64) / 32
>>> u = torch.sin(2 * torch.pi * x).expand(1, 1, 32)
>>> r = heat_residual(u, grid=Grid(), diffusivity=1.0, forcing=4 * torch.pi**2 * u)
>>> float(r.abs().max()) < 1e-10   # steady: -Δu = f
True
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from nol_fast.physics import finite_difference, spectral
from nol_fast.physics.grid import Grid, grid_dims
from nol_fast.physics.stencils import stencil

__all__ = [
    "RESIDUALS",
    "burgers_residual",
    "darcy_coefficient",
    "darcy_operator",
    "darcy_residual",
    "heat_residual",
    "navier_stokes_residual",
    "time_derivative",
    "velocity_from_vorticity",
    "wave_residual",
]

Forcing = float | Tensor


@functools.lru_cache(maxsize=64)
def _record_weights(n_records: int, first: int, order: int, accuracy: int) -> tuple:
    """Rows ``first .. n_records - 1`` of the record-axis derivative matrix, as tuples."""
    st = stencil(order, accuracy)
    if n_records < st.width:
        raise ValueError(
            f"the time derivative of order {order} with accuracy {accuracy} needs at least "
            f"{st.width} records (inputs and prediction together), got {n_records}"
        )
    rows = []
    for i in range(first, n_records):
        row = [0.0] * n_records
        if i < st.radius:
            row[:st.width] = st.left[i]
        elif i >= n_records - st.radius:
            row[n_records - st.width:] = st.right[i - (n_records - st.radius)]
        else:
            row[i - st.radius:i + st.radius + 1] = st.interior
        rows.append(tuple(row))
    return tuple(rows)


def time_derivative(
    u: Tensor, inputs: Tensor | None, dt: float, order: int = 1, accuracy: int = 2
) -> Tensor:
    """Time derivative at the records of ``u``, along the record axis ``[inputs, u]``.

    Parameters
    ----------
    u
        ``(batch, T, *grid)``: ``T`` records ``dt`` apart.
    inputs
        ``(batch, H, *grid)``: the ``H`` records before them, or ``None``.
    dt
        Time between records.
    order, accuracy
        Derivative order (1 or 2) and order of accuracy (2 or 4) of the stencils.

    Returns
    -------
    Tensor
        ``u``'s shape.

    Examples
    --------
    >>> t = torch.arange(4.0)
    >>> time_derivative((t**2).reshape(1, 4, 1), None, dt=1.0)[0, :, 0]
    tensor([0., 2., 4., 6.])
    """
    history = 0 if inputs is None else inputs.shape[1]
    if inputs is not None and (inputs.shape[0] != u.shape[0] or inputs.shape[2:] != u.shape[2:]):
        raise ValueError(f"inputs must hold records of u's batch and grid, (batch, H, "
                         f"{', '.join(map(str, u.shape[2:]))}) with batch {u.shape[0]}, got "
                         f"shape {tuple(inputs.shape)}")
    rows = _record_weights(history + u.shape[1], history, order, accuracy)
    scale = 1.0 / dt**order
    records = [*(inputs[:, j].to(u.dtype) for j in range(history)), *u.unbind(1)] \
        if inputs is not None else list(u.unbind(1))
    # Each derivative is a weighted sum of the few records its stencil row reads: one pass per
    # record over (batch, *grid) slices, with no concatenated copy of the history.
    out = []
    for row in rows:
        terms = [(w * scale, records[j]) for j, w in enumerate(row) if w != 0.0]
        total = terms[0][1] * terms[0][0]
        for w, record in terms[1:]:
            total.add_(record, alpha=w)  # in place: no allocation per term
        out.append(total)
    return out[0].unsqueeze(1) if len(out) == 1 else torch.stack(out, 1)


def _spectral_domain(grid: Grid, n_dims: int, pde: str) -> tuple[float, ...]:
    """The domain lengths of a residual differentiated spectrally; its grid must be periodic."""
    if not all(grid.periodicity(n_dims)):
        raise ValueError(f"the {pde} residual differentiates spectrally and needs a periodic "
                         f"grid, got periodic={grid.periodic!r}")
    return grid.lengths(n_dims)


def _with_time(
    r: Tensor, u: Tensor, inputs: Tensor | None, grid: Grid, order: int, accuracy: int
) -> Tensor:
    return r if grid.dt is None else r + time_derivative(u, inputs, grid.dt, order, accuracy)


def heat_residual(
    u: Tensor, inputs: Tensor | None = None, grid: Grid | None = None, *, diffusivity: float,
    forcing: Forcing = 0.0, accuracy: int = 2,
) -> Tensor:
    """Heat (diffusion) equation ``u_t - κ Δu - f`` on a periodic grid (1 to 3 dims).

    Parameters
    ----------
    u, inputs
        Records ``(batch, T, *grid)`` and the records before them (or ``None``); see the
        module docstring.
    grid
        Periodic :class:`~nol_fast.physics.grid.Grid`; default ``Grid()``, the unit box without
        a time axis.
    diffusivity
        ``κ``.
    forcing
        ``f``.
    accuracy
        2 or 4: order of the time stencils.

    Returns
    -------
    Tensor
        ``u``'s shape.
    """
    grid = grid or Grid()
    domain = _spectral_domain(grid, grid_dims(u, "u"), "heat")
    r = -diffusivity * spectral.laplacian(u, domain) - forcing
    return _with_time(r, u, inputs, grid, 1, accuracy)


def wave_residual(
    u: Tensor, inputs: Tensor | None = None, grid: Grid | None = None, *, speed: float,
    forcing: Forcing = 0.0, accuracy: int = 2,
) -> Tensor:
    """Wave equation ``u_tt - c² Δu - f`` on a periodic grid (1 to 3 dims).

    The second time derivative needs ``accuracy + 2`` records (inputs and prediction together).
    Arguments as in :func:`heat_residual`, with ``speed`` ``c``.
    """
    grid = grid or Grid()
    domain = _spectral_domain(grid, grid_dims(u, "u"), "wave")
    r = -speed**2 * spectral.laplacian(u, domain) - forcing
    return _with_time(r, u, inputs, grid, 2, accuracy)


def burgers_residual(
    u: Tensor, inputs: Tensor | None = None, grid: Grid | None = None, *, viscosity: float,
    forcing: Forcing = 0.0, accuracy: int = 2,
) -> Tensor:
    """Viscous Burgers equation ``u_t + (u²/2)_x - ν u_xx - f`` on a periodic 1-D grid.

    ``u`` is a space-time field ``(batch, T, nx)``: ``T`` records, the layout of
    ``generate_burgers(n_records=T)``; ``inputs`` ``(batch, 1, nx)`` the initial condition (its
    targets' first record is ``dt = time / n_records`` after it). The flux is differentiated in
    conservative form, so the residual's integral over space is the change of the mass alone.
    Other arguments as in :func:`heat_residual`.
    """
    grid = grid or Grid()
    if grid_dims(u, "u") != 1:
        raise ValueError(f"the Burgers residual takes a 1-D field (batch, T, nx), got shape "
                         f"{tuple(u.shape)}")
    (length,) = _spectral_domain(grid, 1, "Burgers")
    flux = spectral.derivative(0.5 * u.square(), -1, 1, length)
    r = flux - viscosity * spectral.derivative(u, -1, 2, length) - forcing
    return _with_time(r, u, inputs, grid, 1, accuracy)


def velocity_from_vorticity(w: Tensor, domain: float | tuple[float, float] = 1.0) -> Tensor:
    """The divergence-free velocity ``(∂ψ/∂y, -∂ψ/∂x)`` of a 2-D periodic vorticity ``w``.

    The stream function solves ``-Δψ = w`` (``w``'s mean, which no periodic velocity carries,
    is dropped).

    Parameters
    ----------
    w
        ``(batch, channels, nx, ny)``.
    domain
        ``(Lx, Ly)`` or one length.

    Returns
    -------
    Tensor
        ``(batch, channels, 2, nx, ny)``.
    """
    psi = -spectral.inverse_laplacian(w, domain)
    grad_psi = spectral.gradient(psi, domain)
    return torch.stack([grad_psi[:, :, 1], -grad_psi[:, :, 0]], dim=2)


def navier_stokes_residual(
    u: Tensor, inputs: Tensor | None = None, grid: Grid | None = None, *, viscosity: float,
    forcing: Forcing = 0.0, accuracy: int = 2,
) -> Tensor:
    """2-D incompressible Navier–Stokes in vorticity form, ``w_t + ∇·(v w) - ν Δw - f``.

    ``u`` is the vorticity ``w``, ``(batch, T, nx, ny)``: ``T`` records, the layout of the
    ``navier_stokes`` dataset's targets, with its history as ``inputs``; ``v`` is
    :func:`velocity_from_vorticity` of each record. The advection ``v·∇w`` is written in its
    conservative form ``∇·(v w)`` (equal for a divergence-free ``v``), which keeps the mean
    vorticity's balance exact on the grid, as the dataset's solver does. Other arguments as in
    :func:`heat_residual`; the FNO paper's forcing is
    :func:`nol_fast.data.navier_stokes.kolmogorov_forcing`.
    """
    grid = grid or Grid()
    if grid_dims(u, "u") != 2:
        raise ValueError(f"the Navier-Stokes residual takes a 2-D vorticity (batch, T, nx, ny), "
                         f"got shape {tuple(u.shape)}")
    domain = _spectral_domain(grid, 2, "Navier-Stokes")
    advection = spectral.divergence(velocity_from_vorticity(u, domain) * u.unsqueeze(2), domain)
    r = advection - viscosity * spectral.laplacian(u, domain) - forcing
    return _with_time(r, u, inputs, grid, 1, accuracy)


def darcy_residual(
    u: Tensor, inputs: Tensor, grid: Grid | None = None, *, forcing: Forcing = 1.0,
    accuracy: int = 2, coefficient_channel: int = 0,
) -> Tensor:
    """Darcy flow ``-∇·(a ∇u) - f`` by finite differences on a 2-D grid.

    The gradient and the divergence are the central first-derivative stencils of
    :mod:`~nol_fast.physics.finite_difference` (one-sided at non-periodic boundaries), so the
    residual covers every point of the grid.

    Parameters
    ----------
    u
        Pressure ``(batch, channels, nx, ny)``.
    inputs
        ``(batch, n_inputs, nx, ny)``; channel ``coefficient_channel`` is the coefficient
        ``a``, shared by every channel of ``u``.
    grid
        Default ``Grid(periodic=False)``: the unit square sampled on both ends, the layout of
        the ``darcy`` dataset (nodes ``i / (n - 1)``).
    forcing
        ``f`` (the dataset's is 1).
    accuracy
        2 or 4.
    coefficient_channel
        Which channel of ``inputs`` holds ``a``.

    Returns
    -------
    Tensor
        ``u``'s shape.
    """
    grid = grid or Grid(periodic=False)
    if grid_dims(u, "u") != 2:
        raise ValueError(f"the Darcy residual takes a 2-D field (batch, channels, nx, ny), got "
                         f"shape {tuple(u.shape)}")
    a = darcy_coefficient(u, inputs, coefficient_channel)
    return darcy_operator(u, a, grid.spacing(u.shape[2:]), grid.periodicity(2), accuracy) - forcing


def darcy_operator(
    u: Tensor, a: Tensor, spacing: tuple[float, float], periodic: tuple[bool, bool],
    accuracy: int = 2,
) -> Tensor:
    """``-∇·(a ∇u)``: the finite-difference gradient, times ``a``, then the divergence.

    ``u``: ``(batch, channels, nx, ny)``; ``a`` broadcasts against it.
    """
    flux = a.unsqueeze(2) * finite_difference.gradient(u, spacing, accuracy, periodic)
    return -finite_difference.divergence(flux, spacing, accuracy, periodic)


def darcy_coefficient(u: Tensor, inputs: Tensor, channel: int = 0) -> Tensor:
    """Channel ``channel`` of ``inputs`` as the coefficient ``(batch, 1, nx, ny)`` for ``u``."""
    if (not isinstance(inputs, Tensor) or inputs.ndim != 4 or inputs.shape[0] != u.shape[0]
            or inputs.shape[2:] != u.shape[2:]):
        raise ValueError(f"the Darcy residual reads the coefficient from inputs of shape "
                         f"({u.shape[0]}, n_inputs, {u.shape[2]}, {u.shape[3]}), got "
                         f"{tuple(inputs.shape) if isinstance(inputs, Tensor) else inputs!r}")
    if not -inputs.shape[1] <= channel < inputs.shape[1]:
        raise ValueError(f"coefficient_channel {channel} is out of range for inputs with "
                         f"{inputs.shape[1]} channels")
    return inputs[:, channel].unsqueeze(1).to(u.dtype)


#: Built-in residuals by name, each ``fn(u, inputs, grid, **parameters)``.
RESIDUALS: dict[str, Callable[..., Tensor]] = {
    "burgers": burgers_residual,
    "darcy": darcy_residual,
    "heat": heat_residual,
    "navier_stokes": navier_stokes_residual,
    "wave": wave_residual,
}
