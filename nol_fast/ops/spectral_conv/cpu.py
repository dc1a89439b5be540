"""Fast CPU spectral convolution: truncated DFTs as dense matrix products, in either layout.

Only a few modes survive a spectral convolution (16 x 9 of the 64 x 33 spectrum of a 64 x 64
grid), so computing the full FFT and discarding most of it wastes the transform. This path
computes exactly the kept modes with DFT matrices instead, one grid dimension at a time, each
step one GEMM (or one batched GEMM) of a small matrix with the activation:

1. analysis, last grid dimension first, real to complex: a real ``(2 k, n)`` matrix whose rows
   are the ``cos`` and ``-sin`` of the kept frequencies;
2. analysis of every other grid dimension, complex to complex: a real ``(2 k, 2 n)`` block
   matrix ``[[Re F, -Im F], [Im F, Re F]]`` that contracts the grid index together with the
   real/imaginary index the previous step produced;
3. the channel contraction: one batched complex GEMM over the kept modes;
4. synthesis, the transposed pattern onto the output grid, ending with a real matrix that takes
   the real part and weighs each half-spectrum frequency by ``c_k`` (zero-padding the spectrum
   is implicit: the matrices only have columns for the kept modes).

The real/imaginary index always sits next to the grid index the following step contracts, so
the steps chain with no transposes, and they do in both layouts the op serves: channels-first
``(batch, channels, *grid)``, the layout of the op's public contract, and channels-last
``(batch, *grid, channels)``, the layout of the FNO's fast CPU path, where the pointwise layers
are plain GEMMs (:mod:`nol_fast.ops.fno_block`). Every step is linear, so the backward pass is
the same steps with transposed matrices, in reverse order; the last one can add into an existing
gradient (the FNO block adds its skip paths' input gradients there).

The matrices are built in float64 and cached per (grids, kept modes, dtype, device). Against
full FFTs (the reference backend) this is 1.7x to 2.5x faster for forward+backward on the
benchmark shapes of ``nol-fast benchmark spectral`` (2 threads; docs/kernels.md has the table).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nol_fast.ops.extension import EXTENSION, amx_enabled
from nol_fast.ops.spectral_conv.mixing import (
    mix_modes,
    mix_modes_backward,
    spectrum_shape,
    weight_dtype,
)
from nol_fast.ops.spectral_conv.modes import ModeIndex


@dataclass(frozen=True)
class DFTPlan:
    """The matrices of one spectral convolution's truncated DFTs.

    Attributes
    ----------
    analysis : tuple of Tensor
        One matrix per grid dimension, in the order they apply: the last dimension first
        (``(2 k, n)``), then the others from the second-to-last to the first
        (``(2 k, 2 n)``).
    synthesis : tuple of Tensor
        One matrix per grid dimension, in the order they apply: the first to the
        second-to-last (``(2 n, 2 k)``), then the last (``(n, 2 k)``).
    in_grid, out_grid, kept : tuple of int
        The grids and the kept block's shape.
    """

    analysis: tuple[torch.Tensor, ...]
    synthesis: tuple[torch.Tensor, ...]
    in_grid: tuple[int, ...]
    out_grid: tuple[int, ...]
    kept: tuple[int, ...]


def _angles(frequencies: torch.Tensor, n: int) -> torch.Tensor:
    # (kept, n): 2 pi f j / n
    return 2 * math.pi * torch.outer(frequencies, torch.arange(n, dtype=torch.float64)) / n


def _analysis_last(n: int, n_last: int) -> torch.Tensor:
    """``(2 k, n)``: rows ``(part, k)``, ``rfft(x, norm='forward')`` on frequencies ``< k``."""
    angle = _angles(torch.arange(n_last, dtype=torch.float64), n)
    return torch.cat((torch.cos(angle), -torch.sin(angle))) / n


def _analysis_dim(n: int, frequencies: Sequence[int]) -> torch.Tensor:
    """``(2 k, 2 n)``: rows ``(part, k)``, columns ``(j, part)``; ``fft(norm='forward')``."""
    angle = _angles(torch.tensor(frequencies, dtype=torch.float64), n)
    re, im = torch.cos(angle) / n, -torch.sin(angle) / n
    # block[q, k, j, p]: output part q from input part p
    block = torch.stack((torch.stack((re, -im), dim=-1), torch.stack((im, re), dim=-1)))
    return block.reshape(2 * len(frequencies), 2 * n)


def _synthesis_dim(n: int, frequencies: Sequence[int]) -> torch.Tensor:
    """``(2 n, 2 k)``: rows ``(j, part)``, columns ``(part, k)``; unscaled inverse DFT."""
    angle = _angles(torch.tensor(frequencies, dtype=torch.float64), n).T
    re, im = torch.cos(angle), torch.sin(angle)
    # block[j, q, p, k]: output part q from input part p
    block = torch.stack((torch.stack((re, -im), dim=1), torch.stack((im, re), dim=1)), dim=1)
    return block.reshape(2 * n, 2 * len(frequencies))


def _synthesis_last(n: int, n_last: int) -> torch.Tensor:
    """``(n, 2 k)``: columns ``(part, k)``; the real part of ``irfft``'s sum, ``c_k`` included.

    ``c_k = 2`` counts the mirrored frequency ``-k``; ``c_0 = 1``, and ``c = 1`` at the
    Nyquist frequency of the output grid.
    """
    k = torch.arange(n_last, dtype=torch.float64)
    c = torch.where((k == 0) | (2 * k == n), 1.0, 2.0)
    angle = _angles(k, n).T
    return torch.cat((torch.cos(angle) * c, -torch.sin(angle) * c), dim=1)


@functools.lru_cache(maxsize=128)
def dft_plan(
    in_grid: tuple[int, ...], out_grid: tuple[int, ...], frequencies: tuple[tuple[int, ...], ...],
    n_last: int, dtype: torch.dtype, device: torch.device,
) -> DFTPlan:
    """The (cached) truncated-DFT matrices from ``in_grid`` to ``out_grid``.

    ``frequencies`` and ``n_last`` are those of a :class:`ModeIndex`.

    Examples
    --------
    >>> plan = dft_plan((16, 16), (16, 16), ((0, 1, -1),), 2, torch.float32, torch.device("cpu"))
    >>> [tuple(m.shape) for m in plan.analysis], [tuple(m.shape) for m in plan.synthesis]
    ([(4, 16), (6, 32)], [(32, 6), (16, 4)])
    """
    analysis = [_analysis_last(in_grid[-1], n_last)]
    analysis += [_analysis_dim(n, f) for n, f in reversed(list(zip(in_grid[:-1], frequencies,
                                                                   strict=True)))]
    synthesis = [_synthesis_dim(n, f) for n, f in zip(out_grid[:-1], frequencies, strict=True)]
    synthesis.append(_synthesis_last(out_grid[-1], n_last))
    kept = (*(len(f) for f in frequencies), n_last)
    return DFTPlan(tuple(m.to(device, dtype).contiguous() for m in analysis),
                   tuple(m.to(device, dtype).contiguous() for m in synthesis),
                   tuple(in_grid), tuple(out_grid), kept)


def plan_for(index: ModeIndex, in_grid: Sequence[int], out_grid: Sequence[int],
             dtype: torch.dtype, device: torch.device) -> DFTPlan:
    """:func:`dft_plan` for a :class:`ModeIndex`."""
    return dft_plan(tuple(in_grid), tuple(out_grid), index.frequencies, index.n_last, dtype,
                    device)


def _contract(t: torch.Tensor, matrix: torch.Tensor, lead: int, rest: int,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """``out[l] (+)= matrix @ t[l]`` with ``t`` viewed ``(lead, cols, rest)``.

    One GEMM when ``rest`` or ``lead`` is 1, else a batched GEMM sharing ``matrix``; with
    ``out`` the product is added into it (the GEMM's own accumulation, no extra pass).
    """
    rows, cols = matrix.shape
    if rest == 1:
        a = t.reshape(lead, cols)
        if out is None:
            return a @ matrix.T
        return out.view(lead, rows).addmm_(a, matrix.T)
    if lead == 1:
        b = t.reshape(cols, rest)
        if out is None:
            return matrix @ b
        return out.view(rows, rest).addmm_(matrix, b)
    b = t.reshape(lead, cols, rest)
    if b.dtype == torch.bfloat16 and b.is_contiguous() and amx_enabled():
        # on AMX tiles: torch's bfloat16 bmm copies the shared matrix once per batch entry
        target = b.new_empty((lead, rows, rest)) if out is None else out.view(lead, rows, rest)
        matrix = matrix.contiguous()  # (the adjoints' transposed matrices are tiny)
        EXTENSION.shared_matmul(lead, rows, cols, rest, matrix.data_ptr(),
                                b.data_ptr(), target.data_ptr(), out is not None,
                                torch.get_num_threads())
        return target
    # the matrix broadcast as a stride-0 batch: torch.matmul would copy it lead times first
    shared = matrix.expand(lead, rows, cols)
    if out is None:
        return torch.bmm(shared, b)
    return out.view(lead, rows, rest).baddbmm_(shared, b)


def _prod(values: Sequence[int]) -> int:
    return math.prod(values)


def analysis(x: torch.Tensor, plan: DFTPlan, channels_last: bool) -> torch.Tensor:
    """Kept spectrum of ``x`` as real parts: ``(B, 2, *kept, C)`` or ``(B, C, 2, *kept)``.

    ``x`` is ``(B, *grid, C)`` (``channels_last``) or ``(B, C, *grid)``, contiguous.
    """
    grid, kept = plan.in_grid, plan.kept
    pre = x.shape[0] if channels_last else x.shape[0] * x.shape[1]
    post = x.shape[-1] if channels_last else 1
    d = len(grid)
    t = x
    for step, matrix in enumerate(plan.analysis):
        j = d - 1 - step  # the grid dimension this step transforms
        t = _contract(t, matrix, pre * _prod(grid[:j]), _prod(kept[j + 1:]) * post)
    return t


def analysis_adjoint(g: torch.Tensor, plan: DFTPlan, channels_last: bool, batch: int,
                     channels: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Adjoint of :func:`analysis`: kept-spectrum gradient to grid gradient (added to ``out``)."""
    grid, kept = plan.in_grid, plan.kept
    pre, post = (batch, channels) if channels_last else (batch * channels, 1)
    d = len(grid)
    for step in reversed(range(d)):
        j = d - 1 - step
        target = out if step == 0 else None
        g = _contract(g, plan.analysis[step].T, pre * _prod(grid[:j]),
                      _prod(kept[j + 1:]) * post, target)
    shape = (batch, *grid, channels) if channels_last else (batch, channels, *grid)
    return g.view(shape)


def synthesis(z: torch.Tensor, plan: DFTPlan, channels_last: bool, batch: int, channels: int
              ) -> torch.Tensor:
    """Output grid values from kept modes ``(B, 2, *kept, C)`` (or ``(B, C, 2, *kept)``)."""
    grid, kept = plan.out_grid, plan.kept
    pre, post = (batch, channels) if channels_last else (batch * channels, 1)
    for j, matrix in enumerate(plan.synthesis):
        z = _contract(z, matrix, pre * _prod(grid[:j]), _prod(kept[j + 1:]) * post)
    shape = (batch, *grid, channels) if channels_last else (batch, channels, *grid)
    return z.view(shape)


def synthesis_adjoint(g: torch.Tensor, plan: DFTPlan, channels_last: bool) -> torch.Tensor:
    """Adjoint of :func:`synthesis`: output-grid gradient to kept-mode gradient."""
    grid, kept = plan.out_grid, plan.kept
    pre = g.shape[0] if channels_last else g.shape[0] * g.shape[1]
    post = g.shape[-1] if channels_last else 1
    for j in reversed(range(len(grid))):
        g = _contract(g, plan.synthesis[j].T, pre * _prod(grid[:j]), _prod(kept[j + 1:]) * post)
    return g


def forward_modes(
    x: torch.Tensor, weight: torch.Tensor, index: ModeIndex, out_grid: Sequence[int],
    channels_last: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, x_modes)`` in either layout.

    ``x_modes`` is the kept input spectrum as :func:`analysis` leaves it, real parts in the
    dtype of ``x`` (:func:`~nol_fast.ops.spectral_conv.mixing.spectrum_shape`), which
    :func:`backward_modes` takes back. ``x`` may be float32, float64 or
    bfloat16; the channel mixing (:func:`~nol_fast.ops.spectral_conv.mixing.mix_modes`) runs in
    complex float32 (complex float64 for float64) and ``y`` has the dtype of ``x``.
    """
    batch = x.shape[0]
    in_grid = x.shape[1:-1] if channels_last else x.shape[2:]
    plan = plan_for(index, in_grid, out_grid, x.dtype, x.device)
    in_channels = x.shape[-1] if channels_last else x.shape[1]
    x_modes = analysis(x, plan, channels_last).view(
        spectrum_shape(batch, in_channels, _prod(plan.kept), channels_last))
    z = mix_modes(x_modes, weight.to(weight_dtype(x.dtype)).contiguous(), index, channels_last)
    y = synthesis(z, plan, channels_last, batch, weight.shape[1])
    return y, x_modes


def backward_modes(
    grad_y: torch.Tensor, x_modes: torch.Tensor, weight: torch.Tensor, index: ModeIndex,
    in_grid: Sequence[int], channels_last: bool, grad_x: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``(grad_x, grad_weight)`` of :func:`forward_modes`.

    ``x_modes`` is the forward pass's, and ``grad_y`` has its dtype. With ``grad_x`` given (the
    layout and dtype of the input), the input gradient is added into it and returned.
    """
    batch = grad_y.shape[0]
    out_grid = grad_y.shape[1:-1] if channels_last else grad_y.shape[2:]
    plan = plan_for(index, in_grid, out_grid, grad_y.dtype, grad_y.device)
    g = synthesis_adjoint(grad_y, plan, channels_last).view(
        spectrum_shape(batch, weight.shape[1], _prod(plan.kept), channels_last))
    w = weight.to(weight_dtype(grad_y.dtype)).contiguous()
    grad_x_modes, grad_w = mix_modes_backward(g, x_modes, w, index, channels_last)
    grad_x = analysis_adjoint(grad_x_modes, plan, channels_last, batch, weight.shape[0], grad_x)
    return grad_x, grad_w.to(weight.dtype)


def cpu_forward(
    x: torch.Tensor, weight: torch.Tensor, index: ModeIndex, out_grid: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral convolution by truncated DFTs; same contract as ``reference_forward``.

    Examples
    --------
    >>> from nol_fast.ops.spectral_conv.modes import mode_index
    >>> w = torch.randn(3, 4, 6, 4, dtype=torch.cfloat)
    >>> y, x_modes = cpu_forward(torch.randn(2, 3, 16, 16), w, mode_index((6, 6), (16, 16)),
    ...                          (16, 16))
    >>> y.shape, x_modes.shape
    (torch.Size([2, 4, 16, 16]), torch.Size([2, 3, 6, 4]))
    """
    y, x_modes = forward_modes(x.contiguous(), weight, index, out_grid, channels_last=False)
    # x_modes: (batch, in, 2, modes) real -> (batch, in, *kept) complex
    parts = x_modes.view(*x.shape[:2], 2, -1).transpose(2, 3)
    return y, torch.view_as_complex(parts.contiguous()).view(*x.shape[:2], *index.kept)


def cpu_backward(
    grad_y: torch.Tensor, x_modes: torch.Tensor, weight: torch.Tensor, index: ModeIndex,
    in_grid: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``(grad_x, grad_weight)`` of :func:`cpu_forward` (adjoint DFTs)."""
    # x_modes: (batch, in, *kept) complex -> (batch, in, 2, modes) real, the forward's layout
    parts = torch.view_as_real(x_modes).reshape(*x_modes.shape[:2], -1, 2).transpose(2, 3)
    return backward_modes(grad_y.contiguous(), parts.contiguous(), weight, index, in_grid,
                          channels_last=False)
