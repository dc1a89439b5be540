"""CUDA Darcy residual: the one-pass Triton kernels of ``nol_fast.ops.triton.darcy_residual``.

The kernels are imported on first use, so that ``nol_fast`` works without Triton. They compute
in float32; float64 inputs run on the reference path. The composition runs on any device the
kernels run on, so the tests exercise it on CPU tensors under the Triton interpreter.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

from nol_fast.ops.darcy_residual.reference import reference_backward, reference_forward
from nol_fast.physics.stencils import stencil


def _kernels():
    from nol_fast.ops.triton import darcy_residual

    return darcy_residual


@functools.lru_cache(maxsize=8)
def _table(accuracy: int, device: torch.device) -> Tensor:
    return stencil(1, accuracy).table(torch.float32).to(device)


def cuda_forward(
    u: Tensor, a: Tensor, f: Tensor | None, f_value: float, spacing: Sequence[float],
    periodic: Sequence[bool], accuracy: int,
) -> tuple[Tensor, Tensor]:
    """``(mean(r²), r)`` as the reference computes it, from one kernel launch."""
    if u.dtype == torch.float64:
        return reference_forward(u, a, f, f_value, spacing, periodic, accuracy)
    loss, r = _kernels().darcy_forward(u, a, f, f_value, spacing, periodic,
                                       _table(accuracy, u.device))
    return loss.to(u.dtype), r.to(u.dtype)


def cuda_backward(
    grad_loss: Tensor, r: Tensor, u: Tensor, a: Tensor, spacing: Sequence[float],
    periodic: Sequence[bool], accuracy: int, need_f: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(grad_u, grad_a, grad_f)`` from one kernel launch."""
    if u.dtype == torch.float64:
        return reference_backward(grad_loss, r, u, a, spacing, periodic, accuracy, need_f)
    grads = _kernels().darcy_backward(grad_loss, r, u, a, spacing, periodic,
                                      _table(accuracy, u.device), need_f)
    return tuple(g.to(u.dtype) for g in grads)
