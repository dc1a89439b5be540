"""The fused Darcy residual op ``nol_fast::darcy_residual_loss``.

See :mod:`~nol_fast.ops.darcy_residual.op` for the backends and their selection.
"""

from nol_fast.ops.darcy_residual.op import BACKENDS, SELECTION, darcy_residual_loss

__all__ = ["BACKENDS", "SELECTION", "darcy_residual_loss"]
