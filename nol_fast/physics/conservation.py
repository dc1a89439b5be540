"""Conserved quantities of a field: mass, momentum and energy as domain integrals.

Every integral is a Riemann sum on the periodic grid of :mod:`nol_fast.physics.grid`,
``∫ f dx ≈ Σ_i f(x_i) · cell_volume``, and all of a field's integrals come from one reduction,
the custom op ``nol_fast::conservation_sums`` (:mod:`nol_fast.ops.conservation`).

Channel layouts
---------------
Which channels hold which quantity is set by ``channels``:

* ``None`` (**scalar layout**, the default): every channel is a conserved density ``u`` of its
  own. Per channel: mass ``∫ u``, energy ``½ ∫ u²``, and momentum the first moment
  ``∫ x_k u``, one component per grid dimension (a scalar carries no velocity; for a density
  obeying ``∂u/∂t + ∇·(u v) = 0``, ``d/dt ∫ x u = ∫ u v`` is the momentum, so matching first
  moments matches the centre of mass the momentum moves; unlike mass and energy it changes
  under a periodic shift);
* ``{"density": ρ, "velocity": [c_1, ..., c_k]}`` (**fluid layout**): channel ``ρ`` is the
  density and channels ``c_j`` the velocity components. Mass ``∫ ρ``, momentum ``∫ ρ v_j``
  (one component per velocity channel), kinetic energy ``½ ∫ ρ |v|²``. Without ``density``
  (``None``, incompressible flow of unit density) the momentum is ``∫ v_j`` and the energy
  ``½ ∫ |v|²``, and there is no mass to conserve.

Examples
--------
>>> import torch
>>> u = torch.ones(2, 3, 8, 8)
>>> q = conserved_quantities(u, ("mass", "momentum", "energy"),
...                          channels={"density": 0, "velocity": [1, 2]})
>>> {name: tuple(value.shape) for name, value in q.items()}
{'mass': (2, 1, 1), 'momentum': (2, 1, 2), 'energy': (2, 1, 1)}
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from torch import Tensor

from nol_fast.physics.grid import cell_volume, grid_spacing

__all__ = ["CONSERVATION_TYPES", "FluidChannels", "conserved_quantities", "fluid_channels"]

CONSERVATION_TYPES: tuple[str, ...] = ("energy", "mass", "momentum")


class FluidChannels(NamedTuple):
    """The fluid layout: the density channel (or ``None``) and the velocity channels."""

    density: int | None
    velocity: tuple[int, ...]


def _channel(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"channels: {what} must be a channel index >= 0, got {value!r}")
    return int(value)


def fluid_channels(
    channels: Mapping[str, object] | None, types: Sequence[str]
) -> FluidChannels | None:
    """Validate a ``channels`` mapping for the conservation ``types``; ``None`` stays ``None``.

    Examples
    --------
    >>> fluid_channels({"velocity": [0, 1]}, ["momentum", "energy"])
    FluidChannels(density=None, velocity=(0, 1))
    """
    if channels is None:
        return None
    if not isinstance(channels, Mapping) or set(channels) - {"density", "velocity"}:
        raise ValueError(f"channels must map 'density' and/or 'velocity' to channel indices, "
                         f"got {channels!r}")
    density = channels.get("density")
    density = None if density is None else _channel(density, "density")
    velocity = channels.get("velocity") or ()
    if isinstance(velocity, numbers.Integral):
        velocity = (velocity,)
    velocity = tuple(_channel(c, "velocity") for c in velocity)
    if len(set(velocity)) != len(velocity) or density in velocity:
        raise ValueError(f"channels: the density and velocity channels must be distinct, got "
                         f"{channels!r}")
    if "mass" in types and density is None:
        raise ValueError("channels: 'mass' needs a density channel (an incompressible flow of "
                         "unit density has no mass to conserve)")
    if {"momentum", "energy"} & set(types) and not velocity:
        raise ValueError("channels: 'momentum' and 'energy' need the velocity channels")
    return FluidChannels(density, velocity)


def conserved_quantities(
    u: Tensor, types: Sequence[str], domain: float | Sequence[float] = 1.0,
    channels: Mapping[str, object] | FluidChannels | None = None, backend: str | None = None,
) -> dict[str, Tensor]:
    """The conserved quantities ``types`` of ``u``, from one reduction.

    Parameters
    ----------
    u
        ``(batch, channels, *grid)``, 1 to 3 grid dims.
    types
        Among :data:`CONSERVATION_TYPES`.
    domain
        Length of every grid dim, or one per dim.
    channels
        The channel layout (see the module docstring); ``None`` for the scalar layout.
    backend
        Backend of ``nol_fast::conservation_sums`` (``None``: automatic).

    Returns
    -------
    dict[str, Tensor]
        Per type ``(batch, n, n_components)``: scalar layout ``n = channels`` with one
        component (mass, energy) or one per grid dim (momentum); fluid layout ``n = 1`` with
        one component (mass, energy) or one per velocity channel (momentum). float16 and
        bfloat16 fields are summed in float32.
    """
    from nol_fast.ops.conservation import conservation_sums

    grid = tuple(u.shape[2:])
    spacing, volume = grid_spacing(grid, domain), cell_volume(grid, domain)
    layout = channels if isinstance(channels, FluidChannels) else fluid_channels(channels, types)
    if layout is None:
        sums = conservation_sums(u, spacing, backend=backend) * volume
        quantities = {"mass": sums[..., :1], "energy": 0.5 * sums[..., 1:2],
                      "momentum": sums[..., 2:]}
        return {t: quantities[t] for t in types}
    used = [c for c in (layout.density, *layout.velocity) if c is not None]
    if max(used) >= u.shape[1]:
        raise ValueError(f"channels {layout} name a channel beyond the field's {u.shape[1]}")
    weighted = [layout.density is not None and c in layout.velocity for c in range(u.shape[1])]
    sums = conservation_sums(u, spacing, layout.density, weighted, backend) * volume
    velocity = list(layout.velocity)
    quantities = {}
    for t in types:
        if t == "mass":
            quantities[t] = sums[:, layout.density, :1].unsqueeze(1)
        elif t == "momentum":
            quantities[t] = sums[:, velocity, 0].unsqueeze(1)
        else:
            quantities[t] = 0.5 * sums[:, velocity, 1].sum(-1, keepdim=True).unsqueeze(1)
    return quantities
