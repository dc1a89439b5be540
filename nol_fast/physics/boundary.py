"""Built-in boundary conditions: the pointwise error of a field on the faces of its grid.

A boundary condition is a function ``fn(u, coords) -> b`` (the signature of
:meth:`nol_fast.training.losses.PhysicsInformedLoss.set_boundary_conditions`); ``b`` has shape
``(batch, n_boundary_points)`` and is zero where the condition holds. The faces of grid
dimension ``d`` are ``u``'s slices at index 0 and ``-1`` along it, so the points on an edge or
corner belong to several faces and count once per face.

* ``'dirichlet'``: ``u - value`` on the faces, ``value`` a number or a tensor that broadcasts
  against ``u`` (its own faces are read);
* ``'periodic'``: ``u`` on the first face minus ``u`` on the last, for grids that sample both
  ends of a periodic dimension. (On the cell-start grids of :mod:`nol_fast.physics.grid`
  periodicity holds by construction: the point ``L`` is not sampled.)

Examples
--------
>>> u = torch.zeros(2, 1, 5, 5)
>>> BoundaryCondition("dirichlet", value=1.0)(u, None).shape   # 4 faces of 5 points
torch.Size([2, 20])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nol_fast.physics.grid import grid_dims

__all__ = ["BOUNDARY_CONDITIONS", "BoundaryCondition", "faces"]

BOUNDARY_CONDITIONS = ("dirichlet", "periodic")


def faces(u: Tensor, dims: Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
    """``u`` on the first and on the last face of each grid dim, ``(batch, n_face_points)``.

    Parameters
    ----------
    u
        ``(batch, channels, *grid)``.
    dims
        Grid dims (0-based, among the grid's) whose faces to take; default all.
    """
    n_dims = grid_dims(u, "u")
    dims = range(n_dims) if dims is None else dims
    for d in dims:
        if not 0 <= d < n_dims:
            raise ValueError(f"boundary dims must be grid dims in [0, {n_dims}), got {list(dims)}")
    first = [u.select(2 + d, 0).flatten(1) for d in dims]
    last = [u.select(2 + d, -1).flatten(1) for d in dims]
    return torch.cat(first, 1), torch.cat(last, 1)


class BoundaryCondition(nn.Module):
    """A built-in boundary condition, callable as ``fn(u, coords)``.

    Parameters
    ----------
    name
        ``'dirichlet'`` or ``'periodic'``.
    value
        Dirichlet value: a number, or a tensor that broadcasts against ``u`` (a buffer, so
        ``.to()`` moves it). Not for ``'periodic'``.
    dims
        Grid dims whose faces the condition covers; default all.
    """

    def __init__(self, name: str, value: float | Tensor = 0.0,
                 dims: Sequence[int] | None = None) -> None:
        super().__init__()
        if name not in BOUNDARY_CONDITIONS:
            raise ValueError(f"unknown boundary condition {name!r}; choose one of: "
                             f"{', '.join(BOUNDARY_CONDITIONS)}, or pass a function "
                             f"fn(u, coords)")
        if name == "periodic" and (isinstance(value, Tensor) or value != 0.0):
            raise ValueError("a periodic boundary condition takes no value")
        self.name, self.dims = name, None if dims is None else tuple(dims)
        if isinstance(value, Tensor):
            self.register_buffer("value", value, persistent=False)
        else:
            self.value = float(value)

    def forward(self, u: Tensor, coords: Tensor | None = None) -> Tensor:
        """The boundary error ``(batch, n_boundary_points)``; ``coords`` is not used."""
        if self.name == "periodic":
            first, last = faces(u, self.dims)
            return first - last
        target = self.value
        if isinstance(target, Tensor):
            u, target = torch.broadcast_tensors(u, target.to(u.dtype))
            return torch.cat(faces(u, self.dims), 1) - torch.cat(faces(target, self.dims), 1)
        return torch.cat(faces(u, self.dims), 1) - target

    def extra_repr(self) -> str:
        value = "tensor" if isinstance(self.value, Tensor) else self.value
        return f"{self.name!r}, value={value}, dims={self.dims}"
