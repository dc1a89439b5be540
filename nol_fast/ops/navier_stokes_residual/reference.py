"""Reference of the fused Navier–Stokes residual: the composition of the spectral operators.

The forward pass is :func:`nol_fast.physics.residuals.navier_stokes_residual`'s spatial part,
``r = extra + ∇·(v w) - ν Δw`` with ``v`` the velocity of ``w``, built from
:mod:`nol_fast.physics.spectral` (five forward and five inverse transforms), and its mean
square. The backward pass differentiates that composition with autograd. Written for clarity,
it is the oracle of the fused backend and the fallback.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nol_fast.physics import spectral
from nol_fast.physics.residuals import velocity_from_vorticity


def spatial_residual(
    w: Tensor, extra: Tensor, viscosity: float, domain: Sequence[float]
) -> tuple[Tensor, Tensor]:
    """``(r, v)``: ``r = extra + ∇·(v w) - ν Δw`` and the velocity ``v`` of ``w``.

    ``w``, ``extra``, ``r``: ``(batch, T, nx, ny)``; ``v``: ``(batch, T, 2, nx, ny)``.
    """
    velocity = velocity_from_vorticity(w, domain)
    advection = spectral.divergence(velocity * w.unsqueeze(2), domain)
    return extra + advection - viscosity * spectral.laplacian(w, domain), velocity


def reference_forward(
    w: Tensor, extra: Tensor, viscosity: float, domain: Sequence[float]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(mean(r²), r, v_x, v_y)`` of :func:`spatial_residual` (the components as tensors of
    their own, the op's outputs)."""
    r, velocity = spatial_residual(w, extra, viscosity, domain)
    vx, vy = (velocity[:, :, d].clone(memory_format=torch.contiguous_format) for d in (0, 1))
    return r.square().mean(), r, vx, vy


def reference_backward(
    grad_loss: Tensor, w: Tensor, extra: Tensor, viscosity: float, domain: Sequence[float]
) -> tuple[Tensor, Tensor]:
    """Gradients ``(grad_w, grad_extra)`` of ``mean(r²)``, by autograd through the composition.

    ``torch.func.vjp`` rather than ``torch.autograd.grad``: inside a custom op the dispatcher
    has already stepped below autograd, and functorch's transform still records the graph.
    """
    def loss(w: Tensor, extra: Tensor) -> Tensor:
        return reference_forward(w, extra, viscosity, domain)[0]

    _, vjp = torch.func.vjp(loss, w, extra)
    return vjp(grad_loss)
