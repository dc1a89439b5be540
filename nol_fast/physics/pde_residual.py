"""A built-in PDE residual bound to its grid and parameters, with a fused mean square.

``PDEResidual("navier_stokes", grid=Grid(dt=0.01), viscosity=1e-3)`` holds one residual of
:data:`nol_fast.physics.residuals.RESIDUALS` with everything but the fields. Calling it gives
the pointwise residual (the composition of the derivative operators); :meth:`mean_square`
gives ``mean(r²)``, the PDE term of :class:`nol_fast.training.losses.PhysicsInformedLoss`,
from the fused custom op where the residual has one:

========================  ==============================================================
residual                  mean square
========================  ==============================================================
``darcy``                 ``nol_fast::darcy_residual_loss`` (C++ on CPU, Triton on CUDA)
``navier_stokes``         ``nol_fast::navier_stokes_residual_loss`` (fused spectral)
``burgers``, ``heat``,    the composition (one or two transforms each; nothing to fuse
``wave``                  that a fused op would save much on)
========================  ==============================================================
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from nol_fast.physics.grid import Grid
from nol_fast.physics.residuals import RESIDUALS, darcy_coefficient, time_derivative

__all__ = ["PDEResidual"]

#: Residuals with a fused custom op, and where its backend selection lives.
FUSED = ("darcy", "navier_stokes")


def _selection(name: str):
    if name == "darcy":
        from nol_fast.ops.darcy_residual import SELECTION
    else:
        from nol_fast.ops.navier_stokes_residual import SELECTION
    return SELECTION


class PDEResidual(nn.Module):
    """One built-in residual with its grid and physical parameters.

    Parameters
    ----------
    name
        A key of :data:`~nol_fast.physics.residuals.RESIDUALS`: ``'burgers'``, ``'darcy'``,
        ``'heat'``, ``'navier_stokes'`` or ``'wave'``.
    grid
        How the fields are sampled (:class:`~nol_fast.physics.grid.Grid`, or a dict of its
        fields); default ``Grid(periodic=False)`` for Darcy (the dataset's nodes), ``Grid()``
        otherwise.
    backend
        Backend of the fused op (``None``: automatic); only for ``'darcy'`` and
        ``'navier_stokes'``.
    **parameters
        The residual's keyword arguments (``viscosity``, ``forcing``, ``accuracy``, ...). A
        tensor ``forcing`` is a buffer, so ``.to()`` moves it.

    Examples
    --------
    >>> residual = PDEResidual("heat", grid=Grid(dt=0.1), diffusivity=0.01)
    >>> u, history = torch.randn(2, 1, 16, 16), torch.randn(2, 2, 16, 16)
    >>> residual(u, history).shape
    torch.Size([2, 1, 16, 16])
    >>> residual.mean_square(u, history).shape
    torch.Size([])
    """

    def __init__(self, name: str, grid: Grid | dict | None = None, backend: str | None = None,
                 **parameters: Any) -> None:
        super().__init__()
        if name not in RESIDUALS:
            raise ValueError(f"unknown PDE residual {name!r}; choose one of: "
                             f"{', '.join(sorted(RESIDUALS))}")
        fn = RESIDUALS[name]
        signature = inspect.signature(fn)
        accepted = [p.name for p in signature.parameters.values()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY]
        unknown = sorted(set(parameters) - set(accepted))
        if unknown:
            raise ValueError(f"the {name} residual has no parameter {', '.join(unknown)}; it "
                             f"takes: {', '.join(accepted)}")
        missing = [p for p in accepted if signature.parameters[p].default is inspect.Parameter.empty
                   and p not in parameters]
        if missing:
            raise ValueError(f"the {name} residual needs {', '.join(missing)}")
        if isinstance(grid, dict):
            grid = Grid(**{k: tuple(v) if isinstance(v, list) else v for k, v in grid.items()})
        if grid is not None and not isinstance(grid, Grid):
            raise TypeError(f"grid must be a Grid, a dict of its fields or None, got {grid!r}")
        if backend is not None:
            if name not in FUSED:
                raise ValueError(f"the {name} residual has no fused op, so no backend to choose; "
                                 f"backends exist for: {', '.join(FUSED)}")
            _selection(name).check(backend)
        self.name, self.fn, self.backend = name, fn, backend
        self.grid = grid or (Grid(periodic=False) if name == "darcy" else Grid())
        forcing = parameters.pop("forcing", None)
        if isinstance(forcing, Tensor):
            self.register_buffer("forcing", forcing, persistent=False)
        else:
            self.forcing = forcing
        self.options = parameters

    def _kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.options)
        if self.forcing is not None:
            kwargs["forcing"] = self.forcing
        return kwargs

    def forward(self, u: Tensor, inputs: Tensor | None = None) -> Tensor:
        """The pointwise residual of ``u`` (see :mod:`nol_fast.physics.residuals`)."""
        return self.fn(u, inputs, self.grid, **self._kwargs())

    def mean_square(self, u: Tensor, inputs: Tensor | None = None) -> Tensor:
        """``mean(r²)`` as a 0-dim tensor, from the fused op where there is one.

        float16/bfloat16 fields are computed in float32, as the loss accumulates them.
        """
        if u.dtype in (torch.float16, torch.bfloat16):
            u = u.float()
        kwargs = self._kwargs()
        if self.name == "darcy":
            from nol_fast.ops.darcy_residual import darcy_residual_loss

            a = darcy_coefficient(u, inputs, kwargs.get("coefficient_channel", 0))
            return darcy_residual_loss(
                u, a, kwargs.get("forcing", 1.0), self.grid.spacing(u.shape[2:]),
                self.grid.periodicity(2), kwargs.get("accuracy", 2), self.backend)
        if self.name == "navier_stokes":
            return self._navier_stokes(u, inputs, kwargs)
        return self.forward(u, inputs).square().mean()

    def _navier_stokes(self, u: Tensor, inputs: Tensor | None, kwargs: dict) -> Tensor:
        from nol_fast.ops.navier_stokes_residual import navier_stokes_residual_loss

        if u.ndim != 4:
            raise ValueError(f"the Navier-Stokes residual takes a 2-D vorticity (batch, T, nx, "
                             f"ny), got shape {tuple(u.shape)}")
        if not all(self.grid.periodicity(2)):
            raise ValueError(f"the Navier-Stokes residual differentiates spectrally and needs a "
                             f"periodic grid, got periodic={self.grid.periodic!r}")
        # The pointwise terms go into the op as one tensor: w_t - f.
        forcing = kwargs.get("forcing", 0.0)
        if self.grid.dt is None:
            extra = torch.zeros_like(u) - forcing
        else:
            w_t = time_derivative(u, inputs, self.grid.dt, 1, kwargs.get("accuracy", 2))
            extra = w_t.sub_(forcing)  # w_t is a fresh tensor: no second allocation
        return navier_stokes_residual_loss(u, extra, kwargs["viscosity"], self.grid.lengths(2),
                                           self.backend)

    def extra_repr(self) -> str:
        forcing = "tensor" if isinstance(self.forcing, Tensor) else self.forcing
        params = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.name!r}, grid={self.grid!r}, forcing={forcing}, {params}"
