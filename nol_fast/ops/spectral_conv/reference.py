"""Reference spectral convolution: full FFTs, an einsum on the kept modes, inverse FFT.

Written for clarity rather than speed, it is the oracle the fast paths are tested against and
the fallback on devices without a fast path. Both directions are explicit so that the op needs
no autograd inside its implementation:

* forward: ``y = irfftn(scatter(einsum(gather(rfftn(x)), W)), s=out_grid)`` with
  ``norm='forward'`` (the spectrum holds Fourier coefficients, the inverse is unscaled);
* backward: the adjoint of each step, in reverse order (see :func:`reference_backward`),
  from the input spectrum on the kept modes that the forward pass returns next to ``y``.

Tensors are complex here: ``weight`` is ``(in, out, *kept)`` complex.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nol_fast.ops.spectral_conv.modes import ModeIndex, gather_modes, rfft_shape, scatter_modes


def half_spectrum_weight(
    n: int, n_kept: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``c_k`` of ``irfft``: frequency ``k`` of the half spectrum stands for ``k`` and ``-k``.

    ``irfft(Z)[j] = sum_k c_k Re(Z_k exp(2 pi i k j / n))`` with ``c_k = 1`` for ``k = 0`` and
    for the Nyquist frequency ``k = n / 2``, ``c_k = 2`` otherwise.
    """
    k = torch.arange(n_kept, device=device)
    return torch.where((k == 0) | (2 * k == n), 1.0, 2.0).to(dtype)


def reference_forward(
    x: torch.Tensor, weight: torch.Tensor, index: ModeIndex, out_grid: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral convolution with full FFTs; returns ``(y, x_modes)``.

    Parameters
    ----------
    x : Tensor
        Real input ``(batch, in_channels, *in_grid)``.
    weight : Tensor
        Complex weight ``(in_channels, out_channels, *n_modes[:-1], n_modes[-1] // 2 + 1)``.
    index : ModeIndex
        Kept modes, from :func:`~nol_fast.ops.spectral_conv.modes.mode_index`.
    out_grid : sequence of int
        Output grid.

    Returns
    -------
    y : Tensor
        ``(batch, out_channels, *out_grid)``.
    x_modes : Tensor
        The input spectrum on the kept modes, ``(batch, in_channels, *index.kept)`` complex,
        which the backward pass needs.

    Examples
    --------
    >>> from nol_fast.ops.spectral_conv.modes import mode_index
    >>> w = torch.randn(3, 4, 6, 4, dtype=torch.cfloat)
    >>> y, x_modes = reference_forward(torch.randn(2, 3, 16, 16), w,
    ...                                mode_index((6, 6), (16, 16)), (16, 16))
    >>> y.shape, x_modes.shape
    (torch.Size([2, 4, 16, 16]), torch.Size([2, 3, 6, 4]))
    """
    dims = tuple(range(2, x.dim()))
    x_ft = torch.fft.rfftn(x, dim=dims, norm="forward")
    # x_ft: (batch, in_channels, *rfft_shape(in_grid))
    x_modes = gather_modes(x_ft, index.in_index, index.n_last)
    w = gather_modes(weight, index.w_index, index.n_last)
    z = torch.einsum("bi...,io...->bo...", x_modes, w)
    # z: (batch, out_channels, *kept)
    out_ft = scatter_modes(z, index.out_index, index.n_last, rfft_shape(out_grid))
    return torch.fft.irfftn(out_ft, s=tuple(out_grid), dim=dims, norm="forward"), x_modes


def reference_backward(
    grad_y: torch.Tensor, x_modes: torch.Tensor, weight: torch.Tensor, index: ModeIndex,
    in_grid: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``(grad_x, grad_weight)`` of :func:`reference_forward`.

    ``x_modes`` is the second output of the forward pass, ``in_grid`` the grid of ``x``.

    With PyTorch's convention for complex gradients (``dL/dRe + i dL/dIm``):

    * the adjoint of the unscaled ``irfftn`` is ``rfftn(g, norm='backward')`` times ``c_k``
      along the last dimension (each half-spectrum entry also stands for its mirror);
    * the adjoint of the contraction is ``sum_o g conj(W)`` for the input and
      ``sum_b conj(X) g`` for the weight;
    * the adjoint of ``rfftn(x, norm='forward')`` is ``irfftn(G / c_k, norm='backward')``.

    ``grad_x`` has the shape of ``x``, ``grad_weight`` that of ``weight`` (zero on weight
    entries the grids are too coarse to use).
    """
    in_grid, out_grid = tuple(in_grid), tuple(grad_y.shape[2:])
    dims = tuple(range(2, grad_y.dim()))
    n_last = index.n_last
    g_ft = torch.fft.rfftn(grad_y, dim=dims, norm="backward")
    g_ft = g_ft * half_spectrum_weight(out_grid[-1], g_ft.shape[-1], grad_y.dtype,
                                       grad_y.device)
    g = gather_modes(g_ft, index.out_index, n_last)
    # g: (batch, out_channels, *kept)
    w = gather_modes(weight, index.w_index, n_last)
    grad_x_block = torch.einsum("bo...,io...->bi...", g, w.conj())
    grad_w_block = torch.einsum("bi...,bo...->io...", x_modes.conj(), g)
    grad_weight = scatter_modes(grad_w_block, index.w_index, n_last, weight.shape[2:])
    grad_x_ft = scatter_modes(grad_x_block, index.in_index, n_last, rfft_shape(in_grid))
    grad_x_ft = grad_x_ft / half_spectrum_weight(in_grid[-1], grad_x_ft.shape[-1],
                                                 grad_y.dtype, grad_y.device)
    grad_x = torch.fft.irfftn(grad_x_ft, s=in_grid, dim=dims, norm="backward")
    return grad_x, grad_weight
