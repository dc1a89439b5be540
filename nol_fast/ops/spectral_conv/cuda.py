"""CUDA spectral convolution: ``torch.fft`` in float32 around the Triton mixing kernels.

The transforms stay in cuFFT, always in float32: cuFFT's half-precision transforms only take
power-of-two sizes, and float32 keeps the spectrum accurate for any grid. The channel mixing,
the gather of the kept modes and the zero-padding into the output spectrum are one Triton
kernel per direction (``nol_fast.ops.triton.spectral_conv``, imported on first use so that
``nol_fast`` works without Triton). Float64 inputs, which the kernels do not take, run on the
reference path.

The composition runs on any device the kernels run on, so the tests exercise it on CPU tensors
with the Triton interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from nol_fast.ops.spectral_conv.modes import ModeIndex, gather_modes, rfft_shape, scatter_modes
from nol_fast.ops.spectral_conv.reference import (
    half_spectrum_weight,
    reference_backward,
    reference_forward,
)


@functools.lru_cache(maxsize=256)
def _whole_block_index(kept: tuple[int, ...]) -> list[torch.Tensor]:
    """Host index arrays of a ``kept`` block read as a spectrum whose every entry is kept."""
    return [torch.arange(k, dtype=torch.int32) for k in kept[:-1]]


def _kernels():
    from nol_fast.ops.triton import spectral_conv

    return spectral_conv


def cuda_forward(
    x: torch.Tensor, weight: torch.Tensor, index: ModeIndex, out_grid: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral convolution with cuFFT and the Triton forward mixing kernel.

    Same contract as :func:`~nol_fast.ops.spectral_conv.reference.reference_forward`: returns
    ``(y, x_modes)``, float32 (float64 for float64 inputs).

    Examples
    --------
    >>> from nol_fast.ops.spectral_conv.modes import mode_index
    >>> w = torch.randn(3, 4, 6, 4, dtype=torch.cfloat, device="cuda")
    >>> cuda_forward(torch.randn(2, 3, 16, 16, device="cuda"), w,
    ...              mode_index((6, 6), (16, 16)), (16, 16))[0].shape
    torch.Size([2, 4, 16, 16])
    """
    if x.dtype == torch.float64:
        return reference_forward(x, weight, index, out_grid)
    dims = tuple(range(2, x.dim()))
    x_ft = torch.fft.rfftn(x.float(), dim=dims, norm="forward")
    # x_ft: (batch, in_channels, *rfft_shape(in_grid))
    # The kernels read the mode tables on the host (and cache device copies): host tensors
    # avoid a device-to-host copy, and so a sync, on every call. They are built once per
    # mode set (ModeIndex.tensors), so a call builds no tensor from Python lists.
    in_index, out_index, w_index = index.tensors("cpu")
    out_ft = _kernels().spectral_mix_forward(
        torch.view_as_real(x_ft), torch.view_as_real(weight.to(torch.complex64)), in_index,
        out_index, w_index, index.n_last, rfft_shape(out_grid))
    # out_ft: (batch, out_channels, *rfft_shape(out_grid), 2)
    y = torch.fft.irfftn(torch.view_as_complex(out_ft), s=tuple(out_grid), dim=dims,
                         norm="forward")
    return y, gather_modes(x_ft, index.in_index, index.n_last)


def cuda_backward(
    grad_y: torch.Tensor, x_modes: torch.Tensor, weight: torch.Tensor, index: ModeIndex,
    in_grid: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``(grad_x, grad_weight)`` of :func:`cuda_forward`.

    The adjoint transforms are those of
    :func:`~nol_fast.ops.spectral_conv.reference.reference_backward`; the Triton backward
    kernel does the two adjoint contractions. It reads the saved kept block ``x_modes`` as
    an input spectrum whose every entry is kept, so its input gradient comes back as that
    block and is scattered into the spectrum of ``in_grid`` here.
    """
    if grad_y.dtype == torch.float64:
        return reference_backward(grad_y, x_modes, weight, index, in_grid)
    in_grid, out_grid = tuple(in_grid), tuple(grad_y.shape[2:])
    dims = tuple(range(2, grad_y.dim()))
    device = grad_y.device
    g_ft = torch.fft.rfftn(grad_y.float(), dim=dims, norm="backward")
    g_ft = g_ft * half_spectrum_weight(out_grid[-1], g_ft.shape[-1], torch.float32, device)
    _, out_index, w_index = index.tensors("cpu")  # host tables, as in cuda_forward
    grad_x_block, grad_w = _kernels().spectral_mix_backward(
        torch.view_as_real(g_ft), torch.view_as_real(x_modes.to(torch.complex64)),
        torch.view_as_real(weight.to(torch.complex64)), _whole_block_index(index.kept),
        out_index, w_index, index.n_last, index.kept)
    grad_x_ft = scatter_modes(torch.view_as_complex(grad_x_block), index.in_index,
                              index.n_last, rfft_shape(in_grid))
    grad_x_ft = grad_x_ft / half_spectrum_weight(in_grid[-1], grad_x_ft.shape[-1],
                                                 torch.float32, device)
    grad_x = torch.fft.irfftn(grad_x_ft, s=in_grid, dim=dims, norm="backward")
    return grad_x, torch.view_as_complex(grad_w)
