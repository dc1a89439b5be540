"""The fused Navier–Stokes residual op ``nol_fast::navier_stokes_residual_loss``.

See :mod:`~nol_fast.ops.navier_stokes_residual.op` for the backends and their selection.
"""

from nol_fast.ops.navier_stokes_residual.op import (
    BACKENDS,
    SELECTION,
    navier_stokes_residual_loss,
)

__all__ = ["BACKENDS", "SELECTION", "navier_stokes_residual_loss"]
