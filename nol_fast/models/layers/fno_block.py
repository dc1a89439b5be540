"""FNOBlock: one Fourier layer of the FNO, as in neuraloperator 2.0's default ``FNOBlocks``.

With ``act`` the block's activation, ``x`` the block's input and ``last`` set on the final
block of a model::

    y = spectral(x) + fno_skip(x)            # global convolution + pointwise skip
    y = act(y)                               # unless last
    y = channel_mlp(y) + channel_mlp_skip(x) # pointwise MLP, skip from the block input
    y = act(y)                               # unless last

When the block changes the grid (``output_shape``), the spectral convolution evaluates its
output on the new grid and the skip paths are interpolated with :func:`resample`.

:meth:`FNOBlock.forward_channels_last` computes the same block on channels-last activations
``(batch, *grid, channels)`` as one ``nol_fast::fno_block`` op (:mod:`nol_fast.ops.fno_block`),
the FNO's fast CPU path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nol_fast.models.layers.channel_mlp import ChannelMLP, Pointwise, check_activation
from nol_fast.models.layers.resample import resample
from nol_fast.models.layers.skip import skip_connection
from nol_fast.models.spectral_conv import SpectralConv
from nol_fast.ops.fno_block import BlockParams, BlockSpec, fno_block


class FNOBlock(nn.Module):
    """One Fourier block: spectral convolution, skips, channel MLP and activations.

    Parameters
    ----------
    channels : int
        Channels of the input and output.
    n_modes : sequence of int
        Fourier modes kept per grid dimension (see :class:`SpectralConv`).
    activation : {'gelu', 'relu', 'silu', 'tanh'}
        Activation after the spectral convolution and after the channel MLP.
    last : bool
        Leave out both activations (the final block of a model).
    use_channel_mlp : bool
        Follow the convolution with a two-layer :class:`ChannelMLP`. Its hidden width is
        ``round(channels * channel_mlp_expansion)`` and its own activation is always GELU,
        as in neuraloperator.
    channel_mlp_expansion : float
        Hidden width of the channel MLP relative to ``channels``.
    fno_skip, channel_mlp_skip : {'linear', 'soft-gating', 'identity', None}
        Skip paths added to the convolution and to the channel MLP (see
        :func:`~nol_fast.models.layers.skip.skip_connection`).

    Examples
    --------
    >>> block = FNOBlock(8, (6, 6))
    >>> block(torch.randn(2, 8, 16, 16)).shape
    torch.Size([2, 8, 16, 16])
    >>> block(torch.randn(2, 8, 16, 16), output_shape=(16, 32)).shape
    torch.Size([2, 8, 16, 32])
    """

    def __init__(
        self,
        channels: int,
        n_modes: Sequence[int],
        activation: str = "gelu",
        last: bool = False,
        use_channel_mlp: bool = True,
        channel_mlp_expansion: float = 0.5,
        fno_skip: str | None = "linear",
        channel_mlp_skip: str | None = "soft-gating",
    ) -> None:
        super().__init__()
        self.last = last
        self._act = check_activation(activation)
        self.spectral = SpectralConv(channels, channels, n_modes)
        self.fno_skip = skip_connection(fno_skip, channels)
        self.channel_mlp = (
            ChannelMLP(channels, channels, round(channels * channel_mlp_expansion))
            if use_channel_mlp else None
        )
        self.channel_mlp_skip = (
            skip_connection(channel_mlp_skip, channels) if use_channel_mlp else None
        )
        self._spec = BlockSpec(tuple(n_modes), fno_skip or "none",
                               (channel_mlp_skip or "none") if use_channel_mlp else "none",
                               "none" if last else activation, use_channel_mlp)

    def forward(
        self, x: torch.Tensor, output_shape: Sequence[int] | None = None
    ) -> torch.Tensor:
        # x: (batch, channels, *grid)
        if output_shape is None:
            out_grid = tuple(x.shape[2:])
            y = self.spectral(x)
        else:
            out_grid = tuple(output_shape)
            y = self.spectral(x, output_shape=out_grid)
        # y: (batch, channels, *out_grid)
        if self.fno_skip is not None:
            y = y + resample(self.fno_skip(x), out_grid)
        if not self.last:
            y = self._act(y)
        if self.channel_mlp is not None:
            mlp = self.channel_mlp(y)
            y = mlp if self.channel_mlp_skip is None else (
                mlp + resample(self.channel_mlp_skip(x), out_grid))
        if not self.last:
            y = self._act(y)
        return y

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """The block on ``x: (batch, *grid, channels)``, on its grid (see the module docstring)."""
        return fno_block(x, self._params(), self._spec)

    def _params(self) -> BlockParams:
        def skip_weight(module: nn.Module | None) -> torch.Tensor | None:
            if isinstance(module, Pointwise):
                return module.matrix
            return getattr(module, "weight", None)  # soft-gating factors, or no parameter

        params = BlockParams(self.spectral.weight, self.spectral.bias,
                             skip_weight(self.fno_skip))
        if self.channel_mlp is not None:
            layers = self.channel_mlp.layers
            params.mlp_weights = (layers[0].matrix, layers[1].matrix)
            params.mlp_biases = (layers[0].bias, layers[1].bias)
            params.mlp_skip = skip_weight(self.channel_mlp_skip)
        return params
