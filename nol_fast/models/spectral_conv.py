"""SpectralConv: the Fourier layer of the FNO in plain PyTorch.

The layer multiplies the lowest Fourier modes of its input by learned complex matrices and
drops the rest, which makes it a global convolution whose weights do not depend on the grid
size. It works on 1-D, 2-D and 3-D grids of any size, odd sizes included.

Mode convention
---------------
``n_modes[i]`` is the number of Fourier modes kept along grid dimension ``i``:

* along every dimension but the last, ``ceil(n_modes[i] / 2)`` non-negative frequencies
  ``0, 1, ...`` and ``floor(n_modes[i] / 2)`` negative ones ``..., -2, -1``, that is the two
  corner blocks of the FFT layout;
* along the last dimension, which is transformed with a real FFT, the ``n_modes[-1] // 2 + 1``
  frequencies ``0 ... n_modes[-1] // 2``.

On a grid too coarse for ``n_modes`` the layer keeps the frequencies the grid has: the
non-negative ones first (the Nyquist frequency of an even grid counts as non-negative), then
the negative ones that remain.

Weight layout
-------------
``weight`` is one complex parameter of shape ``(in_channels, out_channels, *kept)`` with
``kept = (*n_modes[:-1], n_modes[-1] // 2 + 1)``. Along a non-last dimension of size ``m``
the entries are in FFT order, index ``j`` holding frequency ``j`` for ``j < ceil(m / 2)`` and
frequency ``j - m`` after that (``torch.fft.fftfreq(m) * m``); along the last dimension index
``j`` holds frequency ``j``.

Normalisation
-------------
The forward transform uses ``norm='forward'`` (divide by the number of grid points) so that the
spectrum holds the Fourier coefficients of the sampled function, of the same size on every
grid; the inverse is then unscaled. The composite operator is the same as with
``norm='backward'``; only the intermediate magnitudes differ, which keeps them of order one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

_REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def normalize_n_modes(n_modes: int | Sequence[int]) -> tuple[int, ...]:
    """Return ``n_modes`` as a tuple of 1 to 3 positive ints, or raise ``ValueError``."""
    modes = (n_modes,) if isinstance(n_modes, int) else tuple(n_modes)
    if not 1 <= len(modes) <= 3 or not all(
        isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in modes
    ):
        raise ValueError(
            f"n_modes must be 1 to 3 positive ints (one per grid dimension), got {n_modes!r}"
        )
    return modes


def _corner_blocks(
    n_modes: Sequence[int], grid: Sequence[int]
) -> list[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """Pair slices of the rfftn spectrum of ``grid`` with the weight slices that act on them.

    Returns one ``(spectrum_slices, weight_slices)`` pair per corner block: each of the
    non-last dimensions contributes its non-negative or its negative frequencies, the last
    dimension its first modes. Empty blocks are left out.
    """
    per_dim = []
    for m, size in zip(n_modes[:-1], grid[:-1], strict=True):
        n_pos = min((m + 1) // 2, size // 2 + 1)
        n_neg = min(m // 2, size - n_pos)
        blocks = [(slice(0, n_pos), slice(0, n_pos))]
        if n_neg > 0:
            blocks.append((slice(size - n_neg, size), slice(m - n_neg, m)))
        per_dim.append(blocks)
    n_last = min(n_modes[-1] // 2 + 1, grid[-1] // 2 + 1)
    per_dim.append([(slice(0, n_last), slice(0, n_last))])
    return [
        (tuple(spec for spec, _ in combo), tuple(weight for _, weight in combo))
        for combo in itertools.product(*per_dim)
    ]


class SpectralConv(nn.Module):
    """Fourier layer: keep the lowest modes, mix channels per mode, transform back.

    ``y = irfftn(W * rfftn(x))`` restricted to the kept modes (see the module docstring for
    the mode convention and the weight layout), plus an optional bias per output channel.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output.
    n_modes : int or sequence of int
        Modes kept per grid dimension; its length (1, 2 or 3) is the number of grid dims.
    bias : bool
        Add a learned bias of shape ``(out_channels,)``, initialised to zero.

    Notes
    -----
    The real and imaginary parts of the weight are drawn from ``N(0, 1 / (in + out))``, so the
    complex entries have variance ``2 / (in_channels + out_channels)``.

    Inputs in float16 or bfloat16, and inputs under autocast, are transformed in float32; the
    output has the autocast dtype when autocast is on, otherwise the input dtype. Float64
    inputs are transformed in float64.

    Convert the layer with ``.double()`` / ``.float()`` or ``.to(device)``:
    ``Module.to(dtype=torch.float64)`` casts complex parameters to a real dtype, which drops
    their imaginary part, and the forward pass then raises ``TypeError``.

    Examples
    --------
    >>> conv = SpectralConv(3, 5, n_modes=(8, 8))
    >>> conv.weight.shape
    torch.Size([3, 5, 8, 5])
    >>> conv(torch.randn(2, 3, 30, 17)).shape
    torch.Size([2, 5, 30, 17])
    """

    def __init__(
        self, in_channels: int, out_channels: int, n_modes: int | Sequence[int], bias: bool = True
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_modes = normalize_n_modes(n_modes)
        self.n_dims = len(self.n_modes)
        kept = (*self.n_modes[:-1], self.n_modes[-1] // 2 + 1)
        std = math.sqrt(1.0 / (in_channels + out_channels))
        shape = (in_channels, out_channels, *kept)
        self.weight = nn.Parameter(torch.complex(torch.randn(shape) * std,
                                                 torch.randn(shape) * std))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, n_modes={self.n_modes}, "
                f"bias={self.bias is not None}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, in_channels, *grid)
        if x.dim() != self.n_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SpectralConv expects input of shape (batch, {self.in_channels}, *grid) with "
                f"{self.n_dims} grid dims, got {tuple(x.shape)}"
            )
        if not self.weight.is_complex():
            raise TypeError(
                f"SpectralConv weight must be complex, got {self.weight.dtype}; convert the "
                "model with .float()/.double() rather than .to(dtype=...)"
            )
        device_type = x.device.type
        autocast_on = torch.is_autocast_enabled(device_type)
        out_dtype = torch.get_autocast_dtype(device_type) if autocast_on else x.dtype
        grid = tuple(x.shape[2:])
        dims = tuple(range(2, x.dim()))
        with torch.autocast(device_type, enabled=False):
            if autocast_on or x.dtype in _REDUCED_PRECISION:
                x = x.float()
            x_ft = torch.fft.rfftn(x, dim=dims, norm="forward")
            # x_ft: (batch, in_channels, *grid[:-1], grid[-1] // 2 + 1)
            weight = self.weight.to(x_ft.dtype)
            out_ft = x_ft.new_zeros((x.shape[0], self.out_channels, *x_ft.shape[2:]))
            for spec, wslice in _corner_blocks(self.n_modes, grid):
                out_ft[(slice(None), slice(None), *spec)] = torch.einsum(
                    "bi...,io...->bo...",
                    x_ft[(slice(None), slice(None), *spec)],
                    weight[(slice(None), slice(None), *wslice)],
                )
            y = torch.fft.irfftn(out_ft, s=grid, dim=dims, norm="forward")
            # y: (batch, out_channels, *grid)
            if self.bias is not None:
                y = y + self.bias.to(y.dtype).view(-1, *([1] * self.n_dims))
        return y.to(out_dtype)
