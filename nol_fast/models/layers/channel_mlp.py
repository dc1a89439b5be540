"""Pointwise layers: a linear map of the channels at every grid point, and MLPs made of them.

The FNO lifts its input, projects its output and mixes channels inside every Fourier block
with such maps. They act on each grid point alone, so they apply to any grid size. A pointwise
layer is a ``Conv1d`` with kernel size 1 run over the flattened grid, which keeps one weight
layout, ``(out_channels, in_channels, 1)``, for 1-D, 2-D and 3-D models (and neuraloperator's).

On channels-last activations ``(batch, *grid, channels)``, :meth:`ChannelMLP.forward_channels_last`
runs the same MLP as the ``nol_fast::channel_mlp`` op (:mod:`nol_fast.ops.pointwise`): one GEMM
per layer with fused bias and activation, the FNO's fast CPU path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nol_fast.ops.pointwise import ACTIVATIONS, channel_mlp


def check_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return the activation function called ``name``, or raise ``ValueError``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class Pointwise(nn.Conv1d):
    """Linear map of the channels at every grid point: ``y[:, o] = sum_i W[o, i] x[:, i] + b[o]``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output.
    bias : bool
        Learn a bias per output channel.

    Examples
    --------
    >>> Pointwise(3, 5)(torch.randn(2, 3, 8, 8)).shape
    torch.Size([2, 5, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, in_channels, *grid) -> (batch, in_channels, n_points)
        y = super().forward(x.flatten(2))
        return y.unflatten(2, x.shape[2:])  # (batch, out_channels, *grid)

    @property
    def matrix(self) -> torch.Tensor:
        """The weight as an ``(out_channels, in_channels)`` matrix (a view)."""
        return self.weight.view(self.out_channels, self.in_channels)


class ChannelMLP(nn.Module):
    """Pointwise MLP: ``n_layers`` :class:`Pointwise` layers with an activation between them.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output.
    hidden_channels : int
        Width of the hidden layers.
    n_layers : int
        Number of linear layers (1 makes a single ``in -> out`` map).
    activation : {'gelu', 'relu', 'silu', 'tanh'}
        Applied after every layer but the last.

    Examples
    --------
    >>> mlp = ChannelMLP(3, 1, hidden_channels=16)
    >>> mlp(torch.randn(2, 3, 10)).shape
    torch.Size([2, 1, 10])
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int,
                 n_layers: int = 2, activation: str = "gelu") -> None:
        super().__init__()
        self.activation = activation
        self._act = check_activation(activation)
        widths = [in_channels, *[hidden_channels] * (n_layers - 1), out_channels]
        self.layers = nn.ModuleList(
            Pointwise(c_in, c_out) for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, in_channels, *grid)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self._act(x)
        return x  # (batch, out_channels, *grid)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """The same MLP on ``x: (batch, *grid, in_channels)`` (see the module docstring)."""
        return channel_mlp(x, [layer.matrix for layer in self.layers],
                           [layer.bias for layer in self.layers], self.activation)
