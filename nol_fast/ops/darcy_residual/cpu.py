"""The C++ Darcy residual (``csrc/darcy_residual.cpp`` in ``nol_fast._C``) for CPU tensors.

The kernel works plane by plane (one ``(nx, ny)`` slice of one sample and channel) over OpenMP
threads, as many as ``torch.get_num_threads()``: the gradient, the fluxes, the divergence, the
squared sum (forward) and the transposed stencils (backward) run on a plane held in cache, so
the inputs are read and the outputs written once. float32 and float64; tensors arrive
contiguous (the op makes them so).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

from nol_fast.ops.extension import EXTENSION
from nol_fast.physics.stencils import stencil

DTYPE_CODES = {torch.float32: 0, torch.float64: 1}


@functools.cache
def _table(accuracy: int) -> list[float]:
    """The first-derivative stencil's (2R + 1) x (2R + 1) table, row-major."""
    return stencil(1, accuracy).table().flatten().tolist()


def _grid(u: Tensor, spacing: Sequence[float], periodic: Sequence[bool],
          accuracy: int) -> dict:
    st = stencil(1, accuracy)
    return {"planes": u.numel() // (u.shape[-2] * u.shape[-1]), "nx": u.shape[-2],
            "ny": u.shape[-1], "hx": spacing[0], "hy": spacing[1], "periodic_x": periodic[0],
            "periodic_y": periodic[1], "radius": st.radius,
            "table": _table(accuracy), "dtype": DTYPE_CODES[u.dtype]}


def cpu_forward(
    u: Tensor, a: Tensor, f: Tensor | None, f_value: float, spacing: Sequence[float],
    periodic: Sequence[bool], accuracy: int,
) -> tuple[Tensor, Tensor]:
    """``(mean(r²), r)`` as :func:`~nol_fast.ops.darcy_residual.reference.reference_forward`."""
    r = torch.empty_like(u)
    loss = u.new_empty(())
    EXTENSION.darcy_residual_forward_cpu(
        **_grid(u, spacing, periodic, accuracy), u=u.data_ptr(), a=a.data_ptr(),
        f=0 if f is None else f.data_ptr(), f_value=f_value, r=r.data_ptr(),
        loss=loss.data_ptr(), num_threads=torch.get_num_threads())
    return loss, r


def cpu_backward(
    grad_loss: Tensor, r: Tensor, u: Tensor, a: Tensor, spacing: Sequence[float],
    periodic: Sequence[bool], accuracy: int, need_f: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(grad_u, grad_a, grad_f)``; ``grad_f`` is empty unless ``need_f``."""
    grad_u, grad_a = torch.empty_like(u), torch.empty_like(a)
    grad_f = torch.empty_like(u) if need_f else u.new_empty(0)
    grad_loss = grad_loss.to(u.dtype).contiguous()
    EXTENSION.darcy_residual_backward_cpu(
        **_grid(u, spacing, periodic, accuracy), grad_loss=grad_loss.data_ptr(),
        r=r.data_ptr(), u=u.data_ptr(), a=a.data_ptr(), grad_u=grad_u.data_ptr(),
        grad_a=grad_a.data_ptr(), grad_f=grad_f.data_ptr() if need_f else 0,
        num_threads=torch.get_num_threads())
    return grad_u, grad_a, grad_f
