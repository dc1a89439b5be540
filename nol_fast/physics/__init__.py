"""Physics for physics-informed training of neural operators.

Fields are tensors of shape ``(batch, channels, *grid)`` sampled on uniform grids:

* :mod:`~nol_fast.physics.grid`: the grid convention (periodic cell starts on ``[0, L)^d``, or
  both ends) and :class:`Grid`, how a field was sampled in space and time;
* :mod:`~nol_fast.physics.spectral`: FFT derivative operators on periodic grids (gradient,
  divergence, curl, Laplacian, inverse Laplacian);
* :mod:`~nol_fast.physics.finite_difference`: 2nd- and 4th-order finite-difference operators,
  one-sided at non-periodic boundaries, from the stencils of :mod:`~nol_fast.physics.stencils`;
* :mod:`~nol_fast.physics.residuals`: PDE residuals of the standard benchmarks (Burgers,
  Darcy, Navier–Stokes, heat, wave);
* :mod:`~nol_fast.physics.pde_residual`: a built-in residual bound to its grid and parameters,
  whose mean square runs on the fused kernels of :mod:`nol_fast.ops` where they exist;
* :mod:`~nol_fast.physics.boundary` and :mod:`~nol_fast.physics.conservation`: boundary errors
  and conserved quantities.

The losses of :mod:`nol_fast.training.losses` are built on these.
"""

from nol_fast.physics import finite_difference, spectral
from nol_fast.physics.grid import Grid, cell_volume, domain_lengths, grid_spacing, uniform_grid

__all__ = [
    "Grid",
    "cell_volume",
    "domain_lengths",
    "finite_difference",
    "grid_spacing",
    "spectral",
    "uniform_grid",
]
