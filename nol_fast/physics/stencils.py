"""Finite-difference stencils: exact weights for central and one-sided derivatives.

A derivative of order ``m`` at a point is approximated by ``sum_j w_j u(x + o_j h) / h^m``
over integer offsets ``o_j``. The weights make the approximation exact for polynomials of
degree below the number of points: by Taylor expansion they solve

    sum_j w_j o_j^k / k! = [k == m],     k = 0, ..., len(offsets) - 1,

a Vandermonde system solved here in exact rational arithmetic, so the tables carry no
rounding of their own. With ``p`` points the error is ``O(h^(p - m))``, one order more for
central stencils, whose odd error terms cancel.

A :class:`Stencil` is what the derivative operators, the reference residuals and the fused
kernels all read, so that every path uses the same numbers:

* **interior rows** use the central stencil of radius ``R`` (offsets ``-R .. R``);
* **boundary rows** of a non-periodic grid (the first and last ``R`` points) use one-sided
  stencils on the ``W`` points at that end, ``W = order + accuracy``, so they keep the
  interior's order of accuracy.

Examples
--------
>>> stencil(1, 2).interior
(-0.5, 0.0, 0.5)
>>> stencil(1, 2).left
((-1.5, 2.0, -0.5),)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from math import factorial

import torch

__all__ = ["ACCURACIES", "ORDERS", "Stencil", "stencil", "stencil_weights"]

#: Orders of accuracy of the finite-difference operators.
ACCURACIES = (2, 4)
#: Derivative orders the stencils are built for.
ORDERS = (1, 2)


def stencil_weights(offsets: tuple[int, ...], order: int) -> tuple[Fraction, ...]:
    """Exact weights of the ``order``-th derivative on the integer ``offsets`` (spacing 1).

    Parameters
    ----------
    offsets
        Distinct integer offsets of the points from the point of evaluation.
    order
        Derivative order, smaller than ``len(offsets)``.

    Returns
    -------
    tuple of Fraction
        One weight per offset.

    Examples
    --------
    >>> [str(w) for w in stencil_weights((-1, 0, 1), 2)]
    ['1', '-2', '1']
    """
    n = len(offsets)
    if len(set(offsets)) != n or not 0 <= order < n:
        raise ValueError(
            f"need distinct offsets and 0 <= order < len(offsets), got offsets={offsets!r} "
            f"and order={order!r}"
        )
    # Augmented Vandermonde system: row k holds o_j^k / k! and the right-hand side [k == order].
    rows = [[Fraction(o) ** k / factorial(k) for o in offsets] + [Fraction(int(k == order))]
            for k in range(n)]
    for col in range(n):  # Gauss-Jordan elimination; exact, so any non-zero pivot will do
        pivot = next(r for r in range(col, n) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        lead = rows[col][col]
        rows[col] = [v / lead for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [v - factor * p for v, p in zip(rows[r], rows[col], strict=True)]
    return tuple(row[n] for row in rows)


@dataclass(frozen=True)
class Stencil:
    """Weights of one derivative operator on a uniform grid (spacing 1).

    Attributes
    ----------
    order, accuracy
        Derivative order and order of accuracy.
    radius
        ``R``: the interior stencil has offsets ``-R .. R``; the first and last ``R`` points of
        a non-periodic grid are boundary rows.
    width
        ``W``: points of a one-sided boundary stencil; a non-periodic grid needs ``n >= W``.
    interior
        ``2R + 1`` weights for offsets ``-R .. R``.
    left
        ``R`` rows of ``W`` weights: row ``e`` is point ``e``, taps on points ``0 .. W - 1``.
    right
        ``R`` rows of ``W`` weights: row ``e`` is point ``n - R + e``, taps on points
        ``n - W .. n - 1``.
    """

    order: int
    accuracy: int
    radius: int
    width: int
    interior: tuple[float, ...]
    left: tuple[tuple[float, ...], ...]
    right: tuple[tuple[float, ...], ...]

    def table(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``(2R + 1, W)`` rows: left rows, the interior (zero-padded to ``W``), right rows.

        The layout the fused kernels read: row ``e < R`` is boundary point ``e``, row ``R``
        the interior stencil on offsets ``-R .. W - R - 1``, row ``R + 1 + e`` point
        ``n - R + e``.
        """
        interior = self.interior + (0.0,) * (self.width - len(self.interior))
        return torch.tensor([*self.left, interior, *self.right], dtype=dtype)


@functools.cache
def stencil(order: int, accuracy: int) -> Stencil:
    """The :class:`Stencil` of the ``order``-th derivative with the given accuracy.

    Parameters
    ----------
    order
        1 or 2.
    accuracy
        2 or 4.

    Examples
    --------
    >>> s = stencil(2, 4)
    >>> s.radius, s.width, s.interior[:2]
    (2, 6, (-0.08333333333333333, 1.3333333333333333))
    """
    if order not in ORDERS:
        raise ValueError(f"derivative order must be one of {ORDERS}, got {order!r}")
    if accuracy not in ACCURACIES:
        raise ValueError(f"accuracy must be one of {ACCURACIES}, got {accuracy!r}")
    radius = (order + accuracy - 1) // 2
    width = order + accuracy

    def weights(offsets: range) -> tuple[float, ...]:
        return tuple(float(w) for w in stencil_weights(tuple(offsets), order))

    # Boundary point e (from either end) sees the W points at its end of the grid.
    left = tuple(weights(range(-e, width - e)) for e in range(radius))
    right = tuple(weights(range(-(width - radius + e), radius - e)) for e in range(radius))
    return Stencil(order, accuracy, radius, width, weights(range(-radius, radius + 1)), left,
                   right)
