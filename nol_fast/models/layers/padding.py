"""Domain padding: zero-pad the grid before the Fourier blocks and crop it after them.

The Fourier layers treat the grid as periodic. For a non-periodic problem, padding the lifted
function with zeros on both sides of every dimension gives the blocks room to leave the
periodic wrap-around outside the domain of interest. The padding is a fraction of the grid
size, so it scales with the resolution: ``round(fraction * n)`` points on each side.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch.nn import functional as F


def normalize_padding(
    domain_padding: float | Sequence[float] | None, n_dims: int
) -> tuple[float, ...] | None:
    """Return one fraction per grid dimension, or ``None`` when nothing is padded.

    Examples
    --------
    >>> normalize_padding(0.25, 2)
    (0.25, 0.25)
    >>> normalize_padding([0, 0], 2) is None
    True
    """
    if domain_padding is None:
        return None
    if isinstance(domain_padding, numbers.Real):
        fractions = (domain_padding,) * n_dims
    else:
        fractions = tuple(domain_padding)
    if len(fractions) != n_dims or not all(
        isinstance(f, numbers.Real) and not isinstance(f, bool) and f >= 0 for f in fractions
    ):
        raise ValueError(f"domain_padding must be one fraction >= 0 or {n_dims} of them "
                         f"(one per grid dimension), got {domain_padding!r}")
    return tuple(float(f) for f in fractions) if any(fractions) else None


def padding_widths(grid: Sequence[int], fractions: Sequence[float]) -> tuple[int, ...]:
    """Points added on each side of every dimension: ``round(fraction * n)``.

    Examples
    --------
    >>> padding_widths((64, 30), (0.125, 0.125))
    (8, 4)
    """
    return tuple(round(f * n) for f, n in zip(fractions, grid, strict=True))


def pad(x: torch.Tensor, widths: Sequence[int], channels_last: bool = False) -> torch.Tensor:
    """Zero-pad ``x: (batch, channels, *grid)`` by ``widths[d]`` on both sides of dim ``d``.

    With ``channels_last``, ``x`` is ``(batch, *grid, channels)``.
    """
    # F.pad takes (before, after) pairs starting from the last dimension.
    pairs = [w for width in reversed(widths) for w in (width, width)]
    return F.pad(x, [0, 0, *pairs] if channels_last else pairs)


def crop(x: torch.Tensor, widths: Sequence[int], channels_last: bool = False) -> torch.Tensor:
    """Remove ``widths[d]`` points from both sides of grid dim ``d`` of ``x``.

    With ``channels_last``, ``x`` is ``(batch, *grid, channels)``.
    """
    first = 1 if channels_last else 2
    index = tuple(slice(w, x.shape[first + d] - w) for d, w in enumerate(widths))
    return x[(slice(None), *index)] if channels_last else x[(..., *index)]
