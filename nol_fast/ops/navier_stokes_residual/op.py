"""The ``nol_fast::navier_stokes_residual_loss`` custom op: the mean square of the spatial
Navier–Stokes residual in one opaque op, with a fused spectral backend.

``loss = mean(r²)``, ``r = extra + ∇·(v w) - ν Δw`` on a periodic 2-D grid, ``v`` the velocity
of the vorticity ``w``. ``extra`` carries the pointwise terms (the time derivative, minus the
forcing), which :class:`nol_fast.physics.pde_residual.PDEResidual` computes outside the op.
The op returns ``(loss, r, v_x, v_y)``; ``r`` and the velocity are saved for the backward op
``nol_fast::navier_stokes_residual_loss_backward``, which returns ``(grad_w, grad_extra)``.

Backends
--------
``'reference'``
    The composition of :mod:`nol_fast.physics.spectral` operators
    (:mod:`~nol_fast.ops.navier_stokes_residual.reference`), backward by autograd; any device.
``'fused'``
    Three forward and three inverse transform units per direction
    (:mod:`~nol_fast.ops.navier_stokes_residual.fused`); any device ``torch.fft`` runs on.
Selection: :class:`nol_fast.ops.selection.BackendSelection` (explicit, ``NOL_FAST_BACKEND``,
then ``'fused'``), decided when the op runs.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from nol_fast.ops.navier_stokes_residual.fused import fused_backward, fused_forward
from nol_fast.ops.navier_stokes_residual.reference import reference_backward, reference_forward
from nol_fast.ops.selection import BackendSelection

BACKENDS = ("reference", "fused")


def backend_status(backend: str, device_type: str) -> str | None:
    """``None``: both backends run wherever ``torch.fft`` does."""
    SELECTION.check(backend)
    return None


SELECTION = BackendSelection("navier_stokes_residual", BACKENDS, backend_status,
                             {"cpu": ("fused",), "cuda": ("fused",)})


def _module(backend: str):
    if backend == "fused":
        return fused_forward, fused_backward
    return reference_forward, None


@torch.library.custom_op("nol_fast::navier_stokes_residual_loss", mutates_args=())
def _loss(
    w: Tensor, extra: Tensor, viscosity: float, domain: list[float], backend: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    # w, extra: (batch, T, nx, ny) -> loss (), r, v_x, v_y (batch, T, nx, ny)
    forward, _ = _module(SELECTION.resolve(backend, w.device))
    return forward(w.contiguous(), extra.contiguous(), viscosity, domain)


@_loss.register_fake
def _(w, extra, viscosity, domain, backend):
    return w.new_empty(()), torch.empty_like(w), torch.empty_like(w), torch.empty_like(w)


@torch.library.custom_op("nol_fast::navier_stokes_residual_loss_backward", mutates_args=())
def _loss_backward(
    grad_loss: Tensor, w: Tensor, extra: Tensor, r: Tensor, vx: Tensor, vy: Tensor,
    viscosity: float, domain: list[float], backend: str,
) -> tuple[Tensor, Tensor]:
    _, backward = _module(SELECTION.resolve(backend, w.device))
    if backward is None:
        return reference_backward(grad_loss, w, extra, viscosity, domain)
    return backward(grad_loss, w.contiguous(), r.contiguous(), vx.contiguous(), vy.contiguous(),
                    viscosity, domain)


@_loss_backward.register_fake
def _(grad_loss, w, extra, r, vx, vy, viscosity, domain, backend):
    return torch.empty_like(w), torch.empty_like(extra)


def _setup_context(ctx, inputs, output) -> None:
    w, extra, viscosity, domain, backend = inputs
    _, r, vx, vy = output
    ctx.save_for_backward(w, extra, r, vx, vy)
    ctx.mark_non_differentiable(r, vx, vy)
    ctx.viscosity, ctx.domain, ctx.backend = viscosity, domain, backend


def _backward(ctx, grad_loss, _grad_r, _grad_vx, _grad_vy):
    w, extra, r, vx, vy = ctx.saved_tensors
    grad_w, grad_extra = _loss_backward(grad_loss, w, extra, r, vx, vy, ctx.viscosity,
                                        ctx.domain, ctx.backend)
    return grad_w, grad_extra, None, None, None


_loss.register_autograd(_backward, setup_context=_setup_context)


def navier_stokes_residual_loss(
    w: Tensor, extra: Tensor, viscosity: float, domain: float | Sequence[float] = 1.0,
    backend: str | None = None,
) -> Tensor:
    """``mean(r²)`` with ``r = extra + ∇·(v w) - ν Δw``, ``v`` the velocity of ``w``.

    Parameters
    ----------
    w
        Vorticity ``(batch, T, nx, ny)`` on a periodic grid.
    extra
        Pointwise terms added to the residual, ``w``'s shape (the time derivative minus the
        forcing).
    viscosity
        ``ν >= 0``.
    domain
        ``(Lx, Ly)`` or one length.
    backend
        ``'reference'``, ``'fused'`` or ``None`` (see the module docstring).

    Returns
    -------
    Tensor
        0-dim loss, float32 (float64 when ``w`` or ``extra`` is float64); differentiable in
        ``w`` and ``extra``.

    Examples
    --------
    >>> w = torch.randn(2, 1, 16, 16)
    >>> loss = navier_stokes_residual_loss(w, torch.zeros_like(w), viscosity=1e-3)
    >>> loss.shape
    torch.Size([])
    """
    SELECTION.check(backend)
    if w.ndim != 4 or extra.shape != w.shape:
        raise ValueError(f"w must be (batch, T, nx, ny) and extra of the same shape, got w "
                         f"{tuple(w.shape)} and extra {tuple(extra.shape)}")
    if (isinstance(viscosity, bool) or not isinstance(viscosity, numbers.Real)
            or not math.isfinite(viscosity) or viscosity < 0):
        raise ValueError(f"viscosity must be a finite number >= 0, got {viscosity!r}")
    lengths = [float(x) for x in (domain if isinstance(domain, Sequence) else (domain, domain))]
    if len(lengths) != 2 or not all(math.isfinite(x) and x > 0 for x in lengths):
        raise ValueError(f"domain must be one length or (Lx, Ly), all > 0, got {domain!r}")
    dtype = torch.float64 if torch.float64 in (w.dtype, extra.dtype) else torch.float32
    loss, *_ = _loss(w.to(dtype), extra.to(dtype), float(viscosity), lengths, backend or "auto")
    return loss
