"""Fused Navier–Stokes residual: the whole spatial operator from one spectrum per stage.

``r = extra + ∇·(v w) - ν Δw`` with ``v = (∂ψ/∂y, -∂ψ/∂x)``, ``-Δψ = w``, on a periodic 2-D
grid. The reference composition transforms once per operator (the inverse Laplacian, the
gradient of ψ, the divergence, the Laplacian: five forward and five inverse transform units).
Here:

1. one forward transform of ``w``; each velocity component comes from that spectrum with one
   combined symbol (``i k_y / |k|²``, ``-i k_x / |k|²``) and one inverse transform;
2. the fluxes ``v_x w`` and ``v_y w`` on the grid, one forward transform each;
3. the divergence of the fluxes and the viscous term ``ν |k|² ŵ``, on the spectra already at
   hand, accumulated into one spectrum in place and brought back with **one** inverse
   transform, to which the pointwise terms are added in place.

Three forward and three inverse transform units in all (against five and five), and three
products over complex memory. The backward pass is the adjoint of the same stages: every
operator here is a real Fourier multiplier (odd symbols vanish at the Nyquist frequency), so
its transpose is the multiplier with the conjugate symbol, and the backward again takes three
forward and three inverse units. The velocity is saved from the forward pass.

The components are transformed one call each rather than as one batch of ``2 B T`` fields:
MKL's batched complex-to-real transform falls off a cliff at some batch sizes and addresses
(16 spectra of 128 x 65 at a 64-byte-aligned address: 1.15-1.40 ms of CPU time against 0.55-0.60
ms at other alignments, and 0.26-0.30 ms for 8 spectra at any alignment), and the benchmark's
``8 x 1 x 2`` velocity is such a batch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from nol_fast.physics import spectral


class _Symbols(NamedTuple):
    """The fused stages' symbols on the ``rfft2`` spectrum of one grid."""

    velocity: Tensor  # (2, kx, ky) complex: (i k_y, -i k_x) / |k|^2, the velocity from ŵ
    gradient: Tensor  # (2, kx, ky) complex: i k_d
    viscous: Tensor  # (kx, ky) real: ν |k|^2, the symbol of -ν Δ


@functools.lru_cache(maxsize=32)
def _symbols(
    grid: tuple[int, int], domain: tuple[float, ...], viscosity: float, dtype: torch.dtype,
    device: torch.device,
) -> _Symbols:
    symbols = spectral.symbols(grid, domain, dtype, device)
    psi = -symbols.inverse_laplacian  # ψ̂ = ŵ / |k|²
    ik = symbols.gradient
    velocity = torch.stack([ik[1] * psi, -ik[0] * psi])
    return _Symbols(velocity, ik, -viscosity * symbols.laplacian)


def _mean_square(r: Tensor) -> Tensor:
    flat = r.reshape(-1)
    return torch.dot(flat, flat) / flat.numel()  # one pass, where square().mean() takes two


def fused_forward(
    w: Tensor, extra: Tensor, viscosity: float, domain: Sequence[float]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(mean(r²), r, v_x, v_y)``; ``w``, ``extra`` and the outputs: ``(batch, T, nx, ny)``.

    The velocity components are saved for the backward pass.
    """
    grid = tuple(w.shape[-2:])
    symbols = _symbols(grid, tuple(domain), viscosity, w.dtype, w.device)
    w_hat = torch.fft.rfft2(w)
    vx = torch.fft.irfft2(w_hat * symbols.velocity[0], s=grid)
    vy = torch.fft.irfft2(w_hat * symbols.velocity[1], s=grid)
    # r̂ = Σ_d i k_d F_d + ν |k|² ŵ, accumulated in place (each product is one more pass)
    r_hat = torch.fft.rfft2(vx * w).mul_(symbols.gradient[0])
    r_hat.addcmul_(torch.fft.rfft2(vy * w), symbols.gradient[1])
    r_hat.addcmul_(w_hat, symbols.viscous)
    r = torch.fft.irfft2(r_hat, s=grid).add_(extra)
    return _mean_square(r), r, vx, vy


def fused_backward(
    grad_loss: Tensor, w: Tensor, r: Tensor, vx: Tensor, vy: Tensor, viscosity: float,
    domain: Sequence[float],
) -> tuple[Tensor, Tensor]:
    """``(grad_w, grad_extra)`` of :func:`fused_forward`'s loss, by the adjoint stages."""
    grid = tuple(w.shape[-2:])
    symbols = _symbols(grid, tuple(domain), viscosity, w.dtype, w.device)
    g = r * (2.0 / r.numel() * grad_loss)  # d loss / d r
    g_hat = torch.fft.rfft2(g)
    # stage 3 transposed: conj(i k_d) = -i k_d, the sign moved onto the real-space products
    gx = torch.fft.irfft2(g_hat * symbols.gradient[0], s=grid)
    gy = torch.fft.irfft2(g_hat * symbols.gradient[1], s=grid)
    # stage 2, flux_d = v_d w: grad_w = -Σ_d g_d v_d, grad_v_d = -g_d w
    grad_w = gx * vx
    grad_w.addcmul_(gy, vy)
    # stage 1 transposed: the velocity symbol is imaginary (conj = -symbol); with the sign of
    # g_d that is +symbol. Plus the viscous term's real symbol, ν |k|².
    w_hat = torch.fft.rfft2(gx * w).mul_(symbols.velocity[0])
    w_hat.addcmul_(torch.fft.rfft2(gy * w), symbols.velocity[1])
    w_hat.addcmul_(g_hat, symbols.viscous)
    return torch.fft.irfft2(w_hat, s=grid).sub_(grad_w), g
