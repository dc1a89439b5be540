"""Fused Navier–Stokes residual: the whole spatial operator from one spectrum per stage.

``r = extra + ∇·(v w) - ν Δw`` with ``v = (∂ψ/∂y, -∂ψ/∂x)``, ``-Δψ = w``, on a periodic 2-D
grid. The reference composition transforms once per operator (the inverse Laplacian, the
gradient of ψ, the divergence, the Laplacian: five forward and five inverse transforms). Here:

1. one forward transform of ``w``; the velocity's two components come from that spectrum with
   one combined symbol and **one** (batched) inverse transform;
2. the fluxes ``v w`` on the grid, one (batched) forward transform;
3. the divergence of the fluxes and the viscous term ``ν |k|² ŵ``, both on the spectra
   already at hand, summed into one spectrum and brought back with **one** inverse transform.

Three forward and three inverse transform units in all, and the spectral products as few
passes over complex memory. The backward pass is the adjoint of the same stages: every
operator here is a real Fourier multiplier (odd symbols vanish at the Nyquist frequency), so
its transpose is the multiplier with the conjugate symbol, and the backward again takes three
forward and three inverse units. The velocity is saved from the forward pass.
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
) -> tuple[Tensor, Tensor, Tensor]:
    """``(mean(r²), r, velocity)``; ``w``, ``extra``: ``(batch, T, nx, ny)``.

    ``velocity``: ``(batch, T, 2, nx, ny)``, saved for the backward pass.
    """
    grid, dims = tuple(w.shape[-2:]), (-2, -1)
    symbols = _symbols(grid, tuple(domain), viscosity, w.dtype, w.device)
    w_hat = torch.fft.rfft2(w)
    velocity = torch.fft.irfft2(w_hat.unsqueeze(2) * symbols.velocity, s=grid, dim=dims)
    flux_hat = torch.fft.rfft2(velocity * w.unsqueeze(2))
    # r̂ = Σ_d i k_d F_d + ν |k|² ŵ, accumulated in place (each product is one more pass)
    r_hat = flux_hat[:, :, 0] * symbols.gradient[0]
    r_hat.addcmul_(flux_hat[:, :, 1], symbols.gradient[1]).addcmul_(w_hat, symbols.viscous)
    r = torch.fft.irfft2(r_hat, s=grid, dim=dims).add_(extra)
    return _mean_square(r), r, velocity


def fused_backward(
    grad_loss: Tensor, w: Tensor, r: Tensor, velocity: Tensor, viscosity: float,
    domain: Sequence[float],
) -> tuple[Tensor, Tensor]:
    """``(grad_w, grad_extra)`` of :func:`fused_forward`'s loss, by the adjoint stages."""
    grid, dims = tuple(w.shape[-2:]), (-2, -1)
    symbols = _symbols(grid, tuple(domain), viscosity, w.dtype, w.device)
    g = r * (2.0 / r.numel() * grad_loss)  # d loss / d r
    g_hat = torch.fft.rfft2(g)
    # stage 3 transposed: conj(i k_d) = -i k_d, the sign moved onto the real-space products
    grad_flux = torch.fft.irfft2(g_hat.unsqueeze(2) * symbols.gradient, s=grid, dim=dims)
    # stage 2, flux_d = v_d w: grad_w = -Σ_d grad_flux_d v_d, grad_v = -grad_flux w
    grad_w = grad_flux[:, :, 0] * velocity[:, :, 0]
    grad_w.addcmul_(grad_flux[:, :, 1], velocity[:, :, 1])
    grad_velocity_hat = torch.fft.rfft2(grad_flux * w.unsqueeze(2))
    # stage 1 transposed: the velocity symbol is imaginary (conj = -symbol); with the sign of
    # grad_flux that is +symbol. Plus the viscous term's real symbol, ν |k|².
    w_hat = grad_velocity_hat[:, :, 0] * symbols.velocity[0]
    w_hat.addcmul_(grad_velocity_hat[:, :, 1], symbols.velocity[1])
    w_hat.addcmul_(g_hat, symbols.viscous)
    return torch.fft.irfft2(w_hat, s=grid, dim=dims).sub_(grad_w), g
