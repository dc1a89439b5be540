"""Physics utilities for physics-informed training of neural operators.

Fields are tensors of shape ``(batch, channels, *grid)`` sampled on uniform grids;
:mod:`nol_fast.physics.grid` defines the grid convention (periodic, cell-start points on
``[0, L)^d``) that the losses in :mod:`nol_fast.training.losses` and the PDE residuals built
on this package share.
"""

from nol_fast.physics.grid import cell_volume, domain_lengths, grid_spacing, uniform_grid

__all__ = ["cell_volume", "domain_lengths", "grid_spacing", "uniform_grid"]
