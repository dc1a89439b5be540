"""The ``nol_fast::darcy_residual_loss`` custom op: the mean square of the Darcy residual
``r = -∇·(a ∇u) - f`` by finite differences, in one opaque op with fused backends.

The gradient and the divergence are the central first-derivative stencils of
:mod:`nol_fast.physics.stencils` (one-sided at a bounded axis' ends, wrapped on a periodic
one), accuracy 2 or 4. The op returns ``(loss, r)``; ``r`` is saved for the backward op
``nol_fast::darcy_residual_loss_backward``, which returns ``(grad_u, grad_a, grad_f)``.

Backends
--------
``'reference'``
    The composition of :mod:`nol_fast.physics.finite_difference` operators
    (:mod:`~nol_fast.ops.darcy_residual.reference`), backward by autograd; any device.
``'cpu'``
    The C++ kernel of ``nol_fast._C`` (:mod:`~nol_fast.ops.darcy_residual.cpu`), CPU tensors.
``'triton'``
    One Triton kernel per direction (:mod:`~nol_fast.ops.darcy_residual.cuda`), CUDA tensors,
    needs the ``triton`` package.

Selection: :class:`nol_fast.ops.selection.BackendSelection`: explicit, ``NOL_FAST_BACKEND``,
then ``'cpu'`` for CPU tensors and ``'triton'`` for CUDA tensors, else ``'reference'``
(logged once); decided when the op runs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nol_fast.ops import extension
from nol_fast.ops.darcy_residual import cpu
from nol_fast.ops.darcy_residual.reference import reference_backward, reference_forward
from nol_fast.ops.launch import triton_status
from nol_fast.ops.selection import BackendSelection
from nol_fast.physics.stencils import ACCURACIES

BACKENDS = ("reference", "cpu", "triton")


def backend_status(backend: str, device_type: str) -> str | None:
    """``None`` if ``backend`` runs on ``device_type`` tensors here, else the reason it does not."""
    SELECTION.check(backend)
    if backend == "reference":
        return None
    if backend == "cpu":
        if device_type != "cpu":
            return "runs on CPU tensors only"
        missing = extension.missing()
        if missing is None and not hasattr(extension.EXTENSION, "darcy_residual_forward_cpu"):
            missing = "nol_fast._C predates the Darcy kernel; rebuild it"
        return missing
    return triton_status(device_type)


SELECTION = BackendSelection("darcy_residual", BACKENDS, backend_status,
                             {"cpu": ("cpu",), "cuda": ("triton",)})


def _module(backend: str):
    if backend == "triton":
        from nol_fast.ops.darcy_residual import cuda

        return cuda.cuda_forward, cuda.cuda_backward
    if backend == "cpu":
        return cpu.cpu_forward, cpu.cpu_backward
    return reference_forward, reference_backward


def _check_operands(u: Tensor, **others: Tensor | None) -> None:
    """The kernels read every operand point by point as ``u``: one shape, dtype and device."""
    if u.ndim != 4 or u.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"u must be a float32 or float64 tensor (batch, channels, nx, ny), got "
                         f"{u.dtype} of shape {tuple(u.shape)}")
    for name, t in others.items():
        if t is not None and (t.shape != u.shape or t.dtype != u.dtype or t.device != u.device):
            raise ValueError(f"{name} must match u ({u.dtype}, {tuple(u.shape)}, {u.device}), got "
                             f"{t.dtype}, {tuple(t.shape)}, {t.device}")


@torch.library.custom_op("nol_fast::darcy_residual_loss", mutates_args=())
def _loss(
    u: Tensor, a: Tensor, f: Tensor | None, f_value: float, spacing: list[float],
    periodic: list[bool], accuracy: int, backend: str,
) -> tuple[Tensor, Tensor]:
    # u, a, f: (batch, channels, nx, ny) -> loss (), r (batch, channels, nx, ny)
    _check_operands(u, a=a, f=f)
    forward, _ = _module(SELECTION.resolve(backend, u.device))
    return forward(u.contiguous(), a.contiguous(), None if f is None else f.contiguous(),
                   f_value, spacing, periodic, accuracy)


@_loss.register_fake
def _(u, a, f, f_value, spacing, periodic, accuracy, backend):
    return u.new_empty(()), torch.empty_like(u)


@torch.library.custom_op("nol_fast::darcy_residual_loss_backward", mutates_args=())
def _loss_backward(
    grad_loss: Tensor, r: Tensor, u: Tensor, a: Tensor, spacing: list[float],
    periodic: list[bool], accuracy: int, need_f: bool, backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    _check_operands(u, r=r, a=a)
    _, backward = _module(SELECTION.resolve(backend, u.device))
    return backward(grad_loss, r.contiguous(), u.contiguous(), a.contiguous(), spacing,
                    periodic, accuracy, need_f)


@_loss_backward.register_fake
def _(grad_loss, r, u, a, spacing, periodic, accuracy, need_f, backend):
    return torch.empty_like(u), torch.empty_like(a), u.new_empty(u.shape if need_f else (0,))


def _setup_context(ctx, inputs, output) -> None:
    u, a, f, _, spacing, periodic, accuracy, backend = inputs
    ctx.save_for_backward(output[1], u, a)
    ctx.mark_non_differentiable(output[1])
    ctx.need_f = f is not None
    ctx.spacing, ctx.periodic, ctx.accuracy, ctx.backend = spacing, periodic, accuracy, backend


def _backward(ctx, grad_loss, _grad_r):
    r, u, a = ctx.saved_tensors
    grad_u, grad_a, grad_f = _loss_backward(grad_loss, r, u, a, ctx.spacing, ctx.periodic,
                                            ctx.accuracy, ctx.need_f, ctx.backend)
    return grad_u, grad_a, grad_f if ctx.need_f else None, None, None, None, None, None


_loss.register_autograd(_backward, setup_context=_setup_context)


def darcy_residual_loss(
    u: Tensor, a: Tensor, forcing: float | Tensor = 1.0, spacing: tuple[float, float] = (1.0, 1.0),
    periodic: tuple[bool, bool] = (False, False), accuracy: int = 2, backend: str | None = None,
) -> Tensor:
    """``mean(r²)`` with ``r = -∇·(a ∇u) - f``, in one fused pass per direction.

    Parameters
    ----------
    u
        ``(batch, channels, nx, ny)``.
    a
        Coefficient that broadcasts against ``u``, e.g. ``(batch, 1, nx, ny)``.
    forcing
        ``f``: a number or a tensor that broadcasts against ``u``.
    spacing, periodic
        ``(hx, hy)`` and ``(periodic_x, periodic_y)``
        (:meth:`nol_fast.physics.grid.Grid.spacing`).
    accuracy
        2 or 4.
    backend
        ``'reference'``, ``'cpu'``, ``'triton'`` or ``None`` (see the module docstring).

    Returns
    -------
    Tensor
        0-dim, float32 (float64 when any input is float64); differentiable in ``u``, ``a``
        and a tensor ``forcing``.

    Examples
    --------
    >>> u, a = torch.rand(2, 1, 16, 16), torch.ones(2, 1, 16, 16)
    >>> darcy_residual_loss(u, a, spacing=(1 / 15, 1 / 15)).shape
    torch.Size([])
    """
    SELECTION.check(backend)
    if u.ndim != 4:
        raise ValueError(f"u must have shape (batch, channels, nx, ny), got {tuple(u.shape)}")
    if accuracy not in ACCURACIES:
        raise ValueError(f"accuracy must be one of {ACCURACIES}, got {accuracy!r}")
    f = forcing if isinstance(forcing, Tensor) else None
    dtypes = [t.dtype for t in (u, a, f) if t is not None]
    dtype = torch.float64 if torch.float64 in dtypes else torch.float32
    # One shape for all: the kernels read a and f point by point.
    a = a.to(dtype).expand_as(u)
    f = None if f is None else f.to(dtype).expand_as(u)
    loss, _ = _loss(u.to(dtype), a, f, 0.0 if f is not None else float(forcing),
                    [float(h) for h in spacing], [bool(p) for p in periodic], int(accuracy),
                    backend or "auto")
    return loss
