"""Resample a function on a grid to another grid size (the skip paths of super-resolution).

When a Fourier block changes the grid (``output_shape`` or ``resolution_scaling_factor``), its
spectral convolution evaluates its output on the new grid directly, while its skip paths are
pointwise and must be interpolated. This follows neuraloperator's choice, so that converted
models give the same outputs: linear interpolation in 1-D, bicubic in 2-D (both with
``align_corners=True``), and Fourier interpolation (zero-padding or truncating the spectrum)
in 3-D.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch.nn import functional as F

_INTERPOLATION = {1: "linear", 2: "bicubic"}


def _fourier_resample(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Keep the Fourier modes that both grids have and evaluate them on the new grid."""
    dims = tuple(range(2, x.dim()))
    spectrum = torch.fft.rfftn(x, dim=dims, norm="forward")
    # spectrum: (batch, channels, *grid[:-1], grid[-1] // 2 + 1)
    out = spectrum.new_zeros((*x.shape[:2], *shape[:-1], shape[-1] // 2 + 1))
    # Per non-last dim: (source, destination) slices of the non-negative and negative blocks.
    per_dim = []
    for n_in, n_out in zip(x.shape[2:-1], shape[:-1], strict=True):
        m = min(n_in, n_out)
        n_pos, n_neg = (m + 1) // 2, m // 2
        blocks = [(slice(0, n_pos), slice(0, n_pos))]
        if n_neg:
            blocks.append((slice(n_in - n_neg, n_in), slice(n_out - n_neg, n_out)))
        per_dim.append(blocks)
    n_last = min(x.shape[-1], shape[-1]) // 2 + 1
    for combo in itertools.product(*per_dim):
        src = (slice(None), slice(None), *(s for s, _ in combo), slice(0, n_last))
        dst = (slice(None), slice(None), *(d for _, d in combo), slice(0, n_last))
        out[dst] = spectrum[src]
    return torch.fft.irfftn(out, s=shape, dim=dims, norm="forward")


def resample(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Resample ``x: (batch, channels, *grid)`` to ``(batch, channels, *shape)``.

    Returns ``x`` itself when the grid already has that shape.

    Examples
    --------
    >>> resample(torch.randn(2, 3, 16, 16), (32, 24)).shape
    torch.Size([2, 3, 32, 24])
    """
    shape = tuple(shape)
    if tuple(x.shape[2:]) == shape:
        return x
    n_dims = x.dim() - 2
    if n_dims in _INTERPOLATION:
        return F.interpolate(x, size=shape, mode=_INTERPOLATION[n_dims], align_corners=True)
    return _fourier_resample(x, shape)
