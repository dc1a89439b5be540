"""Reference FNO block in channels-last layout: plain torch ops, written for clarity.

With ``act`` the block's activation (none after the last block) and ``x`` the block's input::

    y = spectral(x) + bias + fno_skip(x)
    y = act(y)
    y = mlp(y) + mlp_skip(x)          # with a channel MLP: linear, GELU, linear
    y = act(y)

the math of :class:`nol_fast.models.layers.FNOBlock` on ``(batch, *grid, channels)`` tensors.
It is the oracle of the fused CPU op (:mod:`~nol_fast.ops.fno_block.cpu`) and the path taken
wherever that one does not run; autograd differentiates it like any torch code.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from nol_fast.ops.fno_block.spec import BlockParams, BlockSpec
from nol_fast.ops.pointwise.reference import ACTIVATIONS
from nol_fast.ops.spectral_conv.op import spectral_conv


def _skip(kind: str, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor | None:
    # x: (batch, *grid, channels)
    if kind == "linear":
        return F.linear(x, weight.to(x.dtype))
    if kind == "soft-gating":
        return x * weight.to(x.dtype)
    if kind == "identity":
        return x
    return None


def reference_fno_block(x: torch.Tensor, params: BlockParams, spec: BlockSpec,
                        spectral_backend: str | None = None) -> torch.Tensor:
    """One FNO block on channels-last ``x: (batch, *grid, channels)``.

    ``spectral_backend`` picks the backend of the spectral convolution (default: its automatic
    choice).

    Examples
    --------
    >>> spec = BlockSpec((4, 4), "linear", "soft-gating", "gelu", True)
    >>> params = BlockParams(torch.randn(3, 3, 4, 3, dtype=torch.cfloat), torch.zeros(3),
    ...                      torch.randn(3, 3), (torch.randn(2, 3), torch.randn(3, 2)),
    ...                      (torch.zeros(2), torch.zeros(3)), torch.ones(3))
    >>> reference_fno_block(torch.randn(2, 8, 8, 3), params, spec).shape
    torch.Size([2, 8, 8, 3])
    """
    act = ACTIVATIONS.get(spec.activation, lambda t: t)
    y = spectral_conv(x.movedim(-1, 1), params.spectral_weight, spec.n_modes,
                      backend=spectral_backend).movedim(1, -1)
    y = y + params.spectral_bias.to(y.dtype)
    skip = _skip(spec.fno_skip, x, params.fno_skip)
    if skip is not None:
        y = y + skip
    y = act(y)
    if spec.use_mlp:
        (w1, w2), (b1, b2) = params.mlp_weights, params.mlp_biases
        hidden = F.gelu(F.linear(y, w1.to(y.dtype), b1.to(y.dtype)))
        y = F.linear(hidden, w2.to(y.dtype), b2.to(y.dtype))
        skip = _skip(spec.mlp_skip, x, params.mlp_skip)
        if skip is not None:
            y = y + skip
    return act(y)
