"""Grid positional embedding: the coordinates of every grid point as extra input channels.

An FNO sees its input only through pointwise maps and Fourier modes, which are translation
equivariant; appending the coordinates lets it learn operators that depend on position. The
coordinates are those of the periodic unit grid of :func:`nol_fast.physics.grid.uniform_grid`,
``j / n`` in ``[0, 1)``, so a point has the same coordinate on every grid that contains it.
"""

from __future__ import annotations

import torch
from torch import nn

from nol_fast.physics.grid import uniform_grid


class GridEmbedding(nn.Module):
    """Append the ``n_dims`` coordinates of the unit periodic grid to the channels.

    Parameters
    ----------
    n_dims : int
        Number of grid dimensions; the output has ``n_dims`` more channels than the input.

    Examples
    --------
    >>> GridEmbedding(2)(torch.zeros(4, 1, 8, 6)).shape
    torch.Size([4, 3, 8, 6])
    """

    def __init__(self, n_dims: int) -> None:
        super().__init__()
        self.n_dims = n_dims

    def extra_repr(self) -> str:
        return f"n_dims={self.n_dims}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, channels, *grid)
        coords = uniform_grid(x.shape[2:], device=x.device, dtype=x.dtype).movedim(-1, 0)
        # coords: (n_dims, *grid) -> (batch, n_dims, *grid)
        return torch.cat([x, coords.expand(x.shape[0], *coords.shape)], dim=1)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """The same on ``x: (batch, *grid, channels)``: coordinates appended last."""
        coords = uniform_grid(x.shape[1:-1], device=x.device, dtype=x.dtype)
        # coords: (*grid, n_dims) -> (batch, *grid, n_dims)
        return torch.cat([x, coords.expand(x.shape[0], *coords.shape)], dim=-1)
