"""Reference channel MLP in channels-last layout: plain torch ops, written for clarity.

It is the oracle of the fast path (:mod:`~nol_fast.ops.pointwise.cpu`) and the path taken
wherever that one does not run (other devices and dtypes, no compiled extension); autograd
differentiates it like any torch code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "tanh": torch.tanh,
}


def reference_channel_mlp(
    x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
    activation: str,
) -> torch.Tensor:
    """``x -> linear -> act -> ... -> linear`` over the last (channel) dimension.

    Parameters
    ----------
    x : Tensor
        ``(..., in_channels)``; its dtype is the compute dtype (weights are cast to it).
    weights, biases : sequence of Tensor
        ``(out_i, in_i)`` and ``(out_i,)`` per layer.
    activation : str
        A key of :data:`ACTIVATIONS`, applied between the layers.

    Examples
    --------
    >>> w, b = [torch.eye(2), torch.eye(2)], [torch.zeros(2), torch.ones(2)]
    >>> reference_channel_mlp(torch.tensor([[-1.0, 2.0]]), w, b, "relu")
    tensor([[1., 3.]])
    """
    act = ACTIVATIONS[activation]
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        x = F.linear(x, w.to(x.dtype), b.to(x.dtype))
        if i < len(weights) - 1:
            x = act(x)
    return x
