"""The spectral convolution written as explicit DFT sums: the oracle of the op and model tests.

It follows the mode convention as the docs state it (``nol_fast/ops/spectral_conv/modes.py``,
``docs/models.md``) and shares no code with the library:

* along every grid dimension but the last, ``ceil(m / 2)`` non-negative frequencies and
  ``floor(m / 2)`` negative ones, weight index ``k mod m``; along the last dimension the
  frequencies ``0 .. m // 2``, weight index ``k``;
* a frequency is kept only where both grids have it: the non-negative ones first (an even
  grid's Nyquist frequency counts as non-negative), then the negative ones whose spectrum entry
  is still free;
* the output sums ``c_k Re(Z_k e^{2 pi i k j / n})`` over the last dimension, ``c_k = 2`` but
  at frequency 0 and at the *output* grid's Nyquist frequency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def kept_frequencies(m: int, n_in: int, n_out: int, last: bool) -> list[int]:
    """Signed frequencies kept along one grid dimension of ``n_in`` -> ``n_out`` points."""
    n = min(n_in, n_out)
    if last:
        return list(range(min(m // 2, n // 2) + 1))
    positive = [k for k in range((m + 1) // 2) if k <= n // 2]
    taken = {k % n for k in positive}
    negative = []
    for k in range(-1, -(m // 2) - 1, -1):
        if -k <= n // 2 and k % n not in taken:
            taken.add(k % n)
            negative.append(k)
    return positive + sorted(negative)


def naive_spectral_conv(x: torch.Tensor, weight: torch.Tensor, n_modes: Sequence[int],
                        out_grid: Sequence[int]) -> torch.Tensor:
    """``(batch, in, *in_grid)`` real, ``(in, out, *kept)`` complex -> ``(batch, out, *out_grid)``.

    Computed in complex128 and returned as float64; differentiable in ``x`` and ``weight``.
    """
    in_grid, n_dims = x.shape[2:], len(n_modes)
    spec, w = x.to(torch.complex128), weight.to(torch.complex128)
    freqs = []
    for d, (m, n_in, n_out) in enumerate(zip(n_modes, in_grid, out_grid, strict=True)):
        last = d == n_dims - 1
        k = kept_frequencies(m, n_in, n_out, last)
        freqs.append(torch.tensor(k, dtype=torch.float64))
        j = torch.arange(n_in, dtype=torch.float64)
        analysis = torch.exp(-2j * math.pi * torch.outer(freqs[-1], j) / n_in) / n_in
        # spec: (batch, in, ..., kept along d, ...)
        spec = torch.movedim(torch.tensordot(spec, analysis, dims=([2 + d], [1])), -1, 2 + d)
        w = w.index_select(2 + d, torch.tensor(k if last else [f % m for f in k],
                                               dtype=torch.long))
    out = torch.einsum("bi...,io...->bo...", spec, w)
    for d, n_out in enumerate(out_grid):
        j = torch.arange(n_out, dtype=torch.float64)
        synthesis = torch.exp(2j * math.pi * torch.outer(j, freqs[d]) / n_out)
        if d == n_dims - 1:
            k = freqs[d]
            synthesis = synthesis * torch.where((k == 0) | (2 * k == n_out), 1.0, 2.0)
        out = torch.movedim(torch.tensordot(out, synthesis, dims=([2 + d], [1])), -1, 2 + d)
    return out.real
