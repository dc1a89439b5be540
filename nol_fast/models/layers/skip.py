"""Skip connections of the Fourier blocks.

Each block adds a skip path to its spectral convolution (``fno_skip``) and to its channel
MLP (``channel_mlp_skip``). The kinds are those of neuraloperator:

* ``'linear'``: a bias-free :class:`Pointwise` map of the channels;
* ``'soft-gating'``: one learned factor per channel, initialised to one;
* ``'identity'``: the input itself;
* ``None``: no skip path.
"""

from __future__ import annotations

import torch
from torch import nn

from nol_fast.models.layers.channel_mlp import Pointwise

SKIP_KINDS = ("linear", "soft-gating", "identity", None)


class SoftGating(nn.Module):
    """Scale every channel by a learned factor: ``y[:, c] = weight[c] * x[:, c]``.

    Parameters
    ----------
    channels : int
        Number of channels; ``weight`` has shape ``(channels,)`` and starts at one.

    Examples
    --------
    >>> SoftGating(4)(torch.ones(2, 4, 8)).sum().item()
    64.0
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, channels, *grid)
        return x * self.weight.view(-1, *([1] * (x.dim() - 2)))


def skip_connection(kind: str | None, channels: int) -> nn.Module | None:
    """Build a skip path from ``channels`` to ``channels``, or ``None`` for ``kind=None``.

    Examples
    --------
    >>> skip_connection("soft-gating", 8)
    SoftGating()
    """
    if kind == "linear":
        return Pointwise(channels, channels, bias=False)
    if kind == "soft-gating":
        return SoftGating(channels)
    if kind == "identity":
        return nn.Identity()
    if kind is None:
        return None
    raise ValueError(f"unknown skip connection {kind!r}; choose one of: "
                     f"{', '.join(map(repr, SKIP_KINDS))}")
