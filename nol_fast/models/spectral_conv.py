"""SpectralConv: the Fourier layer of the FNO.

The layer multiplies the lowest Fourier modes of its input by learned complex matrices and
drops the rest, which makes it a global convolution whose weights do not depend on the grid
size. It works on 1-D, 2-D and 3-D grids of any size, odd sizes included. The math is the
custom op ``nol_fast::spectral_conv`` (:mod:`nol_fast.ops.spectral_conv`), which picks a fast
backend per device (docs/kernels.md); this module holds the parameters and the checks.

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

Resolution
----------
``forward(x, output_shape)`` evaluates the output on another grid: the kept modes are
zero-padded into (or cut to) the spectrum of ``output_shape``. With the ``norm='forward'``
convention below, a band-limited input gives the same function on every output grid.

Normalisation
-------------
The forward transform uses ``norm='forward'`` (divide by the number of grid points) so that the
spectrum holds the Fourier coefficients of the sampled function, of the same size on every
grid; the inverse is then unscaled. The composite operator is the same as with
``norm='backward'``; only the intermediate magnitudes differ, which keeps them of order one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from nol_fast.ops.spectral_conv.modes import kept_shape, normalize_n_modes
from nol_fast.ops.spectral_conv.op import check_backend_name, spectral_conv

__all__ = ["SpectralConv", "normalize_n_modes"]


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
    backend : str, optional
        Backend of the ``nol_fast::spectral_conv`` op: ``'reference'``, ``'cpu'``,
        ``'triton'``, or ``None`` for ``$NOL_FAST_BACKEND`` and then automatic selection (see
        :mod:`nol_fast.ops.spectral_conv.op`).

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
    >>> conv(torch.randn(2, 3, 30, 17), output_shape=(60, 34)).shape
    torch.Size([2, 5, 60, 34])
    """

    def __init__(
        self, in_channels: int, out_channels: int, n_modes: int | Sequence[int],
        bias: bool = True, backend: str | None = None,
    ) -> None:
        super().__init__()
        check_backend_name(backend)
        self.backend = backend
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_modes = normalize_n_modes(n_modes)
        self.n_dims = len(self.n_modes)
        kept = kept_shape(self.n_modes)
        std = math.sqrt(1.0 / (in_channels + out_channels))
        shape = (in_channels, out_channels, *kept)
        self.weight = nn.Parameter(torch.complex(torch.randn(shape) * std,
                                                 torch.randn(shape) * std))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    @classmethod
    def from_neuralop(cls, module: nn.Module) -> SpectralConv:
        """Build from a neuraloperator ``SpectralConv`` with the same outputs (even grids).

        See :func:`nol_fast.models.interop.spectral_conv_from_neuralop`.
        """
        from nol_fast.models.interop import spectral_conv_from_neuralop

        return spectral_conv_from_neuralop(module)

    def to_neuralop(self) -> nn.Module:
        """The equivalent neuraloperator ``SpectralConv`` (needs neuraloperator installed)."""
        from nol_fast.models.interop import spectral_conv_to_neuralop

        return spectral_conv_to_neuralop(self)

    def extra_repr(self) -> str:
        backend = "" if self.backend is None else f", backend={self.backend!r}"
        return (f"{self.in_channels}, {self.out_channels}, n_modes={self.n_modes}, "
                f"bias={self.bias is not None}{backend}")

    def forward(self, x: torch.Tensor, output_shape: Sequence[int] | None = None) -> torch.Tensor:
        """Apply the layer; ``output_shape`` is the output grid (default: the input grid)."""
        # x: (batch, in_channels, *grid)
        if x.dim() != self.n_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SpectralConv expects input of shape (batch, {self.in_channels}, *grid) with "
                f"{self.n_dims} grid dims, got {tuple(x.shape)}"
            )
        if output_shape is not None and (
            len(output_shape) != self.n_dims or min(output_shape) < 1
        ):
            raise ValueError(
                f"output_shape must be {self.n_dims} positive grid sizes, got {output_shape!r}"
            )
        if not self.weight.is_complex():
            raise TypeError(
                f"SpectralConv weight must be complex, got {self.weight.dtype}; convert the "
                "model with .float()/.double() rather than .to(dtype=...)"
            )
        y = spectral_conv(x, self.weight, self.n_modes, output_shape, self.backend)
        # y: (batch, out_channels, *output_shape)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype).view(-1, *([1] * self.n_dims))
        return y
