"""Reference of the fused Darcy residual: the composition of the finite-difference operators.

``r = -∇·(a ∇u) - f`` from :func:`nol_fast.physics.finite_difference.gradient` and
:func:`~nol_fast.physics.finite_difference.divergence`
(:func:`nol_fast.physics.residuals.darcy_operator`), and its mean square. The backward pass is
autograd through that composition. Written for clarity, it is the oracle of the fused backends
and the fallback.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nol_fast.physics.residuals import darcy_operator


def reference_forward(
    u: Tensor, a: Tensor, f: Tensor | None, f_value: float, spacing: Sequence[float],
    periodic: Sequence[bool], accuracy: int,
) -> tuple[Tensor, Tensor]:
    """``(mean(r²), r)``; ``u``, ``a`` (and ``f``): ``(planes..., nx, ny)`` of one shape."""
    r = darcy_operator(u, a, tuple(spacing), tuple(periodic), accuracy)
    r = r - (f if f is not None else f_value)
    return r.square().mean(), r


def reference_backward(
    grad_loss: Tensor, r: Tensor, u: Tensor, a: Tensor, spacing: Sequence[float],
    periodic: Sequence[bool], accuracy: int, need_f: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(grad_u, grad_a, grad_f)``; ``grad_f = -d loss / d r``, empty unless ``need_f``.

    ``torch.func.vjp`` records the composition inside the custom op, where the dispatcher has
    already stepped below autograd.
    """
    g = r * (2.0 / r.numel() * grad_loss)
    _, vjp = torch.func.vjp(
        lambda u, a: darcy_operator(u, a, tuple(spacing), tuple(periodic), accuracy), u, a)
    grad_u, grad_a = vjp(g)
    return grad_u, grad_a, -g if need_f else g.new_empty(0)
