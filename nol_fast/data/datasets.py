"""The built-in generated datasets, registered for :func:`~nol_fast.data.create_data_loader`.

Each builder calls a documented solver of :mod:`nol_fast.data` with the ``data`` options. The
solvers draw their random inputs from a generator seeded with ``seed``; the options, seed and
device type key the on-disk cache, since random streams differ between CPU and CUDA.

======================  ==========================================================  ========
``dataset``             operator                                                    channels
======================  ==========================================================  ========
``heat``                ``u(., 0) -> u(., T)`` of the periodic heat equation         1 -> 1
``darcy``               coefficient ``a -> u`` of ``-div(a grad u) = 1`` (FNO paper)  1 -> 1
``burgers``             ``u(., 0) -> u(., T)`` of viscous Burgers (FNO paper)         1 -> 1
``navier_stokes``       vorticity history -> future (FNO paper), time series          h -> k
======================  ==========================================================  ========
"""

from __future__ import annotations

import torch

from nol_fast.data.heat import generate_heat
from nol_fast.data.registry import register_dataset


def generation_device(device: str) -> torch.device:
    """``'auto'``: CUDA when available (the solvers run batched on it), else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@register_dataset("heat", resolution=32, n_dims=2, diffusivity=0.01, time=0.5)
def build_heat(n_samples: int, seed: int, resolution: int, n_dims: int, diffusivity: float,
               time: float) -> dict[str, torch.Tensor]:
    """Heat equation pairs, generated on the CPU (the closed form costs nothing)."""
    x, y = generate_heat(n_samples, resolution=resolution, n_dims=n_dims,
                         diffusivity=diffusivity, time=time, seed=seed)
    return {"x": x, "y": y}


@register_dataset("darcy", resolution=64)
def build_darcy(n_samples: int, seed: int, resolution: int) -> dict[str, torch.Tensor]:
    """Darcy flow pairs (coefficient, pressure); the sparse solves run on the CPU."""
    from nol_fast.data.darcy import generate_darcy  # scipy is imported only when needed

    a, u = generate_darcy(n_samples, resolution=resolution, seed=seed)
    return {"x": a, "y": u}


@register_dataset("burgers", resolution=256, viscosity=0.1, time=1.0, device="auto")
def build_burgers(n_samples: int, seed: int, resolution: int, viscosity: float, time: float,
                  device: str) -> dict[str, torch.Tensor]:
    """Burgers pairs (initial condition, solution at ``time``)."""
    from nol_fast.data.burgers import generate_burgers

    x, y = generate_burgers(n_samples, resolution=resolution, viscosity=viscosity, time=time,
                            seed=seed, device=generation_device(device))
    return {"x": x.cpu(), "y": y.cpu()}


@register_dataset("navier_stokes", resolution=64, time_series=True, viscosity=1e-3, time=1.0,
                  n_records=10, dt=1e-4, device="auto")
def build_navier_stokes(n_samples: int, seed: int, resolution: int, viscosity: float,
                        time: float, n_records: int, dt: float,
                        device: str) -> dict[str, torch.Tensor]:
    """Vorticity trajectories ``(n, n_records + 1, res, res)``, initial state included."""
    from nol_fast.data.navier_stokes import generate_navier_stokes

    trajectories = generate_navier_stokes(
        n_samples, resolution=resolution, viscosity=viscosity, time=time, n_records=n_records,
        dt=dt, seed=seed, device=generation_device(device),
    )  # fmt: skip
    return {"trajectories": trajectories.cpu()}
