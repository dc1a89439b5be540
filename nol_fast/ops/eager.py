"""Eager calls of the channels-last CPU ops without the dispatcher's Python layers.

``nol_fast::fno_block`` and ``nol_fast::channel_mlp`` are ``torch.library`` custom ops so that
torch.compile sees them as opaque nodes with fake implementations. In eager mode a call of such
an op goes through the dispatcher, the op's Python autograd layer, argument flattening and a
redispatch to its backend, forward and backward: about 0.12 ms per op and step on top of the
kernels, 0.7 ms of an FNO training step with six of them (setup (a) of
``nol-fast benchmark e2e``). :class:`EagerOp` runs the same kernels under a plain
``torch.autograd.Function``; the ops call it when nothing is being compiled.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Kernels(Protocol):
    """An op's forward and backward kernels, with its options bound."""

    def forward(self, x: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """``[out, *saved]``: the output and what the backward pass needs."""

    def backward(self, grad_out: torch.Tensor, x: torch.Tensor, params: list[torch.Tensor],
                 saved: list[torch.Tensor], needs_input_grad: bool) -> list[torch.Tensor | None]:
        """``[grad_x, *grad_params]`` (``grad_x`` may be ``None`` when not needed)."""


class EagerOp(torch.autograd.Function):
    """``EagerOp.apply(kernels, x, *params)``: an op's output, differentiable in ``x, params``."""

    @staticmethod
    def forward(ctx, kernels: Kernels, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        out, *saved = kernels.forward(x, list(params))
        ctx.save_for_backward(x, *params, *saved)
        ctx.kernels, ctx.n_params = kernels, len(params)
        ctx.set_materialize_grads(False)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor | None):
        if grad_out is None:  # the output took no part in the loss
            return (None,) * (2 + ctx.n_params)
        x, *rest = ctx.saved_tensors
        n = ctx.n_params
        grads = ctx.kernels.backward(grad_out.contiguous(), x, rest[:n], rest[n:],
                                     ctx.needs_input_grad[1])
        return None, *grads
