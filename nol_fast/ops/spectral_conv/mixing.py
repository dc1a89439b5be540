"""The CPU spectral convolution's channel mixing: ``y = x @ W`` on every kept Fourier mode.

Between its truncated DFTs (:mod:`nol_fast.ops.spectral_conv.cpu`) a spectral convolution
multiplies the kept spectrum, mode by mode, by the complex weight. The DFTs leave that spectrum
as real and imaginary parts in the activation's layout, ``(batch, 2, modes, channels)``
(channels-last) or ``(batch, channels, 2, modes)``, and the weight is a parameter of shape
``(in, out, *modes)``; a batched complex GEMM needs both with the modes in front, which took
five copies per block and step (spectrum in and out of complex float32, the weight gathered and
transposed, its gradient scattered back), more than the products themselves. The kernel of
``csrc/mode_mixing_kernel.h`` reads and writes every operand in its own layout instead; its
backward pass gives the input spectrum's gradient and the weight's, already in the weight's
layout. On an FNO block of setup (a) of ``nol-fast benchmark e2e`` (8 samples, 32 channels,
144 kept modes, 2 threads) it takes 0.15 to 0.18 ms forward and 0.31 to 0.36 ms backward; the
copies and complex GEMMs it replaces took about 0.5 and 0.8 ms.

Layers that keep fewer modes than half their samples, and every layer where the extension is
not built, mix by a batched complex GEMM on copies instead (see :func:`_by_kernel`). Spectra
may be float32, bfloat16 (both with a complex64 weight, computed in float32) or float64 (with a
complex128 weight).
"""

from __future__ import annotations

import functools
import math

import torch

from nol_fast.ops.extension import EXTENSION
from nol_fast.ops.spectral_conv.modes import ModeIndex, gather_modes, scatter_modes

_STORAGE = {torch.float32: 0, torch.bfloat16: 1, torch.float64: 2}


def weight_dtype(spectrum_dtype: torch.dtype) -> torch.dtype:
    """The weight dtype the kernel computes with next to a spectrum of ``spectrum_dtype``."""
    return torch.complex128 if spectrum_dtype == torch.float64 else torch.complex64


@functools.lru_cache(maxsize=128)
def _offsets(w_index: tuple[tuple[int, ...], ...], n_last: int, w_modes: tuple[int, ...]
             ) -> tuple[torch.Tensor, bool]:
    """Each kept mode's flat index among the weight's modes, and whether they are all of them.

    Kept modes run in the order of the DFTs' output: row-major over ``index.kept``, as
    :func:`~nol_fast.ops.spectral_conv.modes.gather_modes` leaves them.
    """
    flat = torch.arange(math.prod(w_modes), dtype=torch.int64)
    offsets = gather_modes(flat.view(1, 1, *w_modes), w_index, n_last).reshape(-1).contiguous()
    return offsets, offsets.shape == flat.shape and bool((offsets == flat).all())


def spectrum_shape(batch: int, channels: int, n_kept: int, channels_last: bool
                   ) -> tuple[int, int, int, int]:
    """The shape of a kept spectrum: ``(batch, 2, modes, channels)`` or ``(batch, channels, 2,
    modes)``."""
    return (batch, 2, n_kept, channels) if channels_last else (batch, channels, 2, n_kept)


def _parts(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A spectrum viewed as ``(batch, part, mode, channel)``, whatever its layout."""
    return t if channels_last else t.permute(0, 2, 3, 1)


def _parts_of(weight: torch.Tensor, n_kept: int, channels_last: bool,
              *spectra: tuple[torch.Tensor, int]) -> list[torch.Tensor]:
    """Each ``(spectrum, channels)`` as :func:`_parts`, checked against the weight and
    ``n_kept``."""
    tensors = [s for s, _ in spectra]
    dtype = tensors[0].dtype
    if dtype not in _STORAGE or any(s.dim() != 4 or s.dtype != dtype or not s.is_contiguous()
                                    or s.device.type != "cpu" for s in tensors):
        raise ValueError(f"mode mixing: spectra must be contiguous 4-d float32, bfloat16 or "
                         f"float64 CPU tensors of one dtype, got "
                         f"{[(tuple(s.shape), s.dtype, s.device.type) for s in tensors]}")
    if weight.dtype != weight_dtype(dtype) or not weight.is_contiguous():
        raise ValueError(f"mode mixing: a {dtype} spectrum needs a contiguous "
                         f"{weight_dtype(dtype)} weight, got {weight.dtype}")
    parts = [_parts(s, channels_last) for s in tensors]
    batch = parts[0].shape[0]
    for p, (_, channels) in zip(parts, spectra, strict=True):
        if tuple(p.shape) != (batch, 2, n_kept, channels):
            raise ValueError(f"mode mixing: spectra of shapes "
                             f"{[tuple(s.shape) for s in tensors]} do not fit {n_kept} modes "
                             f"of {[c for _, c in spectra]} channels")
    return parts


def _complex(parts: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(batch, part, mode, channel)`` real parts as complex ``(mode, batch, channel)``."""
    return torch.view_as_complex(parts.permute(2, 0, 3, 1).to(dtype).contiguous())


def _to_parts(z: torch.Tensor, parts: torch.Tensor) -> None:
    """Write complex ``(mode, batch, channel)`` into a ``(batch, part, mode, channel)`` view."""
    parts.copy_(torch.view_as_real(z).permute(1, 3, 0, 2))


def _kept_weight(weight: torch.Tensor, index: ModeIndex) -> torch.Tensor:
    """``(modes, in, out)``: the weight on the kept modes, the layout of a batched GEMM."""
    w = gather_modes(weight, index.w_index, index.n_last)
    return w.reshape(*w.shape[:2], -1).permute(2, 0, 1)


def _gemm_forward(x_parts: torch.Tensor, weight: torch.Tensor, index: ModeIndex,
                  y_parts: torch.Tensor) -> None:
    # one batched complex GEMM over the kept modes, on copies with the modes in front
    w = _kept_weight(weight, index).contiguous()
    _to_parts(torch.bmm(_complex(x_parts, w.real.dtype), w), y_parts)


def _gemm_backward(g_parts: torch.Tensor, x_parts: torch.Tensor, weight: torch.Tensor,
                   index: ModeIndex, grad_x_parts: torch.Tensor) -> torch.Tensor:
    """Writes the input spectrum's gradient; returns the weight's."""
    w = _kept_weight(weight, index)
    g = _complex(g_parts, w.real.dtype)
    _to_parts(torch.bmm(g, w.conj().transpose(1, 2)), grad_x_parts)
    grad = torch.bmm(_complex(x_parts, w.real.dtype).conj().transpose(1, 2), g)
    block = grad.permute(1, 2, 0).reshape(*weight.shape[:2], *index.kept)
    return scatter_modes(block, index.w_index, index.n_last, weight.shape[2:])


def _by_kernel(n_kept: int, batch: int) -> bool:
    """Whether the kernel mixes ``n_kept`` modes of ``batch`` samples faster than a GEMM (and
    is there: without the compiled extension the GEMM does every mixing).

    The kernel's vector lanes run over the modes, 16 at a time, so a thread's work is that of
    16 modes however few it has, and it grows with the batch; a batched complex GEMM's grows
    with the modes (its copies of the weight above all). Forward and backward, 2 threads, in
    ms, kernel against GEMM: batch 32 and 64 channels, 0.33 against 1.11 with 3 kept modes,
    1.21 against 0.80 with 9, 1.20 against 1.44 with 17; batch 16, 0.65 against 0.70 with 9;
    batch 8 and 32 channels, 0.10 against 0.16 with 3 modes and 0.11 against 0.28 with 9.
    The kernel wins from about half as many modes as samples.
    """
    return EXTENSION is not None and 2 * n_kept >= batch


def mix_modes(x_modes: torch.Tensor, weight: torch.Tensor, index: ModeIndex,
              channels_last: bool) -> torch.Tensor:
    """The kept output spectrum ``y[b, m] = x[b, m] @ W[:, :, m]``, in the layout of ``x_modes``.

    ``y`` is ``(batch, 2, modes, out)`` (``channels_last``) or ``(batch, out, 2, modes)``.

    Parameters
    ----------
    x_modes : Tensor
        Kept input spectrum as real parts, contiguous: ``(batch, 2, modes, in)``
        (``channels_last``) or ``(batch, in, 2, modes)`` (:func:`spectrum_shape`).
    weight : Tensor
        ``(in, out, *modes)`` complex (see :func:`weight_dtype`), contiguous.
    index : ModeIndex
        Which of the weight's modes each kept mode is.

    Examples
    --------
    >>> from nol_fast.ops.spectral_conv.modes import mode_index
    >>> w = torch.randn(3, 4, 2, 2, dtype=torch.complex64)
    >>> mix_modes(torch.randn(5, 2, 4, 3), w, mode_index((2, 2), (8, 8)), True).shape
    torch.Size([5, 2, 4, 4])
    """
    in_ch, out_ch = weight.shape[:2]
    n_kept = math.prod(index.kept)
    x_parts, = _parts_of(weight, n_kept, channels_last, (x_modes, in_ch))
    batch = x_modes.shape[0]
    y = x_modes.new_empty(spectrum_shape(batch, out_ch, n_kept, channels_last))
    y_parts = _parts(y, channels_last)
    if not _by_kernel(n_kept, batch):
        _gemm_forward(x_parts, weight, index, y_parts)
        return y
    offsets, _ = _offsets(index.w_index, index.n_last, tuple(weight.shape[2:]))
    EXTENSION.mode_mixing_forward(batch, n_kept, in_ch, out_ch, x_modes.data_ptr(),
                                  list(x_parts.stride()), y.data_ptr(), list(y_parts.stride()),
                                  torch.view_as_real(weight).data_ptr(),
                                  math.prod(weight.shape[2:]),
                                  offsets.data_ptr(), _STORAGE[x_modes.dtype],
                                  torch.get_num_threads())
    return y


def mix_modes_backward(grad_modes: torch.Tensor, x_modes: torch.Tensor, weight: torch.Tensor,
                       index: ModeIndex, channels_last: bool
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``(grad_x_modes, grad_weight)`` of :func:`mix_modes`.

    ``grad_modes`` is the output spectrum's gradient in the layout :func:`mix_modes` returned;
    ``grad_x_modes`` has the layout of ``x_modes`` and ``grad_weight`` that of ``weight``, zero
    on the modes no kept mode uses.
    """
    in_ch, out_ch = weight.shape[:2]
    n_kept = math.prod(index.kept)
    g_parts, x_parts = _parts_of(weight, n_kept, channels_last, (grad_modes, out_ch),
                                 (x_modes, in_ch))
    batch = x_modes.shape[0]
    grad_x = torch.empty_like(x_modes)
    if not _by_kernel(n_kept, batch):
        return grad_x, _gemm_backward(g_parts, x_parts, weight, index,
                                      _parts(grad_x, channels_last))
    offsets, every_mode = _offsets(index.w_index, index.n_last, tuple(weight.shape[2:]))
    grad_w = torch.empty_like(weight) if every_mode else torch.zeros_like(weight)
    EXTENSION.mode_mixing_backward(batch, n_kept, in_ch, out_ch, x_modes.data_ptr(),
                                   list(x_parts.stride()), grad_modes.data_ptr(),
                                   list(g_parts.stride()), torch.view_as_real(weight).data_ptr(),
                                   math.prod(weight.shape[2:]), offsets.data_ptr(),
                                   grad_x.data_ptr(), torch.view_as_real(grad_w).data_ptr(),
                                   _STORAGE[x_modes.dtype], torch.get_num_threads())
    return grad_x, grad_w
