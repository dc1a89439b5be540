"""The ``nol_fast::conservation_sums`` custom op: every conserved integral of a field in one
reduction.

For each ``(batch, channel)`` row of ``u`` (``(batch, channels, *grid)``, 1 to 3 grid dims):
``[Σ m u, Σ m u², Σ x_1 u, ..., Σ x_d u]``, with ``m`` the sample's density channel on the rows
``weighted`` marks (1 elsewhere) and ``x_k`` the cell-start coordinates. Times the cell volume
these are the mass (or momentum, ``∫ ρ v``), twice the energy and the first moments that
:mod:`nol_fast.physics.conservation` builds the conservation losses from. The backward op
``nol_fast::conservation_sums_backward`` returns ``grad_u``.

Backends
--------
``'reference'``
    Plain torch reductions (:mod:`~nol_fast.ops.conservation.reference`); any device, and
    the path for CPU tensors.
``'triton'``
    One Triton kernel per direction (:mod:`~nol_fast.ops.conservation.cuda`), CUDA tensors,
    needs the ``triton`` package.

Selection: :class:`nol_fast.ops.selection.BackendSelection`: explicit, ``NOL_FAST_BACKEND``,
then ``'triton'`` for CUDA tensors (falling back to ``'reference'``, logged once).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nol_fast.ops.conservation.reference import reference_sums, reference_sums_backward
from nol_fast.ops.launch import triton_status
from nol_fast.ops.selection import BackendSelection

BACKENDS = ("reference", "triton")


def backend_status(backend: str, device_type: str) -> str | None:
    """``None`` if ``backend`` runs on ``device_type`` tensors here, else the reason it does not."""
    SELECTION.check(backend)
    if backend == "reference":
        return None
    return triton_status(device_type)


SELECTION = BackendSelection("conservation", BACKENDS, backend_status, {"cuda": ("triton",)})


def _module(backend: str):
    if backend == "triton":
        from nol_fast.ops.conservation import cuda

        return cuda.cuda_sums, cuda.cuda_sums_backward
    return reference_sums, reference_sums_backward


@torch.library.custom_op("nol_fast::conservation_sums", mutates_args=())
def _sums(u: Tensor, density: int, weighted: list[bool], spacing: list[float],
          backend: str) -> Tensor:
    # u: (batch, channels, *grid) -> (batch, channels, 2 + n_dims)
    forward, _ = _module(SELECTION.resolve(backend, u.device))
    return forward(u.contiguous(), density, weighted, spacing)


@_sums.register_fake
def _(u, density, weighted, spacing, backend):
    return u.new_empty((*u.shape[:2], u.ndim))


@torch.library.custom_op("nol_fast::conservation_sums_backward", mutates_args=())
def _sums_backward(grad_sums: Tensor, u: Tensor, density: int, weighted: list[bool],
                   spacing: list[float], backend: str) -> Tensor:
    _, backward = _module(SELECTION.resolve(backend, u.device))
    return backward(grad_sums.contiguous(), u.contiguous(), density, weighted, spacing)


@_sums_backward.register_fake
def _(grad_sums, u, density, weighted, spacing, backend):
    return torch.empty_like(u)


def _setup_context(ctx, inputs, output) -> None:
    u, density, weighted, spacing, backend = inputs
    ctx.save_for_backward(u)
    ctx.density, ctx.weighted, ctx.spacing, ctx.backend = density, weighted, spacing, backend


def _backward(ctx, grad_sums):
    (u,) = ctx.saved_tensors
    grad_u = _sums_backward(grad_sums, u, ctx.density, ctx.weighted, ctx.spacing, ctx.backend)
    return grad_u, None, None, None, None


_sums.register_autograd(_backward, setup_context=_setup_context)


def conservation_sums(
    u: Tensor, spacing: Sequence[float], density: int | None = None,
    weighted: Sequence[bool] | None = None, backend: str | None = None,
) -> Tensor:
    """``[Σ m u, Σ m u², Σ x_k u]`` per ``(batch, channel)`` row, in one reduction.

    Parameters
    ----------
    u
        ``(batch, channels, *grid)``, 1 to 3 grid dims; float16/bfloat16 are summed in float32.
    spacing
        Cell size per grid dim; the coordinates are the cell starts ``i_k h_k``.
    density
        The density channel, or ``None``.
    weighted
        Per channel, whether ``m`` is the density (default: no channel).
    backend
        ``'reference'``, ``'triton'`` or ``None`` (see the module docstring).

    Returns
    -------
    Tensor
        ``(batch, channels, 2 + n_dims)``, differentiable in ``u``.

    Examples
    --------
    >>> conservation_sums(torch.ones(1, 1, 4), spacing=[0.25])
    tensor([[[4.0000, 4.0000, 1.5000]]])
    """
    SELECTION.check(backend)
    if not 3 <= u.ndim <= 5 or len(spacing) != u.ndim - 2:
        raise ValueError(f"u must be (batch, channels, *grid) with 1 to 3 grid dims and one "
                         f"spacing per grid dim, got shape {tuple(u.shape)} and spacing "
                         f"{list(spacing)}")
    weighted = [False] * u.shape[1] if weighted is None else [bool(w) for w in weighted]
    if len(weighted) != u.shape[1]:
        raise ValueError(f"weighted must hold one flag per channel ({u.shape[1]}), got "
                         f"{weighted}")
    if density is not None and not 0 <= density < u.shape[1]:
        raise ValueError(f"density channel {density} is out of range for {u.shape[1]} channels")
    u = u.float() if u.dtype in (torch.float16, torch.bfloat16) else u
    return _sums(u, -1 if density is None else int(density), weighted,
                 [float(h) for h in spacing], backend or "auto")
