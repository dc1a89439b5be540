"""FNO: the Fourier neural operator for functions on 1-D, 2-D and 3-D periodic grids.

The model lifts the input function to ``hidden_channels`` with a pointwise MLP, applies
``n_layers`` Fourier blocks (a :class:`SpectralConv` plus a pointwise linear skip) and projects
back to ``out_channels`` with a second pointwise MLP. Every layer acts either pointwise or on a
fixed set of Fourier modes, so the same weights apply to any grid size.

This is the plain PyTorch reference model; a later release matches the default FNO of
neuraloperator 2.0 layer for layer and adds fused kernels behind the same class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nol_fast.models.base import NeuralOperatorBase
from nol_fast.models.registry import register_model
from nol_fast.models.spectral_conv import SpectralConv, normalize_n_modes
from nol_fast.physics.grid import uniform_grid

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}

_CONVS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _pointwise(n_dims: int, in_channels: int, out_channels: int, bias: bool = True) -> nn.Module:
    """A linear map of the channels at every grid point (a convolution with kernel size 1)."""
    return _CONVS[n_dims](in_channels, out_channels, kernel_size=1, bias=bias)


def _channel_mlp(
    n_dims: int, in_channels: int, hidden: int, out_channels: int, activation: str
) -> nn.Sequential:
    """Two pointwise linear layers with an activation between them."""
    return nn.Sequential(
        _pointwise(n_dims, in_channels, hidden),
        ACTIVATIONS[activation](),
        _pointwise(n_dims, hidden, out_channels),
    )


@register_model("fno", "fourier_neural_operator")
class FNO(NeuralOperatorBase):
    """Fourier neural operator.

    ``x -> [coordinates] -> lifting MLP -> n_layers x (act(spectral(x) + skip(x))) ->
    projection MLP``, with no activation after the last Fourier block.

    Parameters
    ----------
    n_modes : int or sequence of int
        Fourier modes kept per grid dimension (see :class:`SpectralConv`); its length (1, 2 or
        3) sets ``n_dims``.
    in_channels, out_channels : int
        Channels of the input and output functions.
    hidden_channels : int
        Width of the Fourier blocks.
    n_layers : int
        Number of Fourier blocks.
    lifting_channels, projection_channels : int, optional
        Hidden width of the lifting and projection MLPs; default ``2 * hidden_channels``.
    positional_embedding : bool
        Append the grid coordinates ``j / n`` in ``[0, 1)`` of every spatial dimension to the
        input as ``n_dims`` extra channels.
    activation : {'gelu', 'relu', 'silu', 'tanh'}
        Nonlinearity of the MLPs and between Fourier blocks.

    Notes
    -----
    Each Fourier block has a :class:`SpectralConv` with bias and a bias-free pointwise skip.

    Examples
    --------
    >>> model = FNO(n_modes=(12, 12), in_channels=1, out_channels=1, hidden_channels=32)
    >>> model(torch.randn(4, 1, 64, 64)).shape
    torch.Size([4, 1, 64, 64])
    """

    def __init__(
        self,
        n_modes: int | Sequence[int],
        in_channels: int = 1,
        out_channels: int = 1,
        hidden_channels: int = 32,
        n_layers: int = 4,
        lifting_channels: int | None = None,
        projection_channels: int | None = None,
        positional_embedding: bool = True,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.n_modes = normalize_n_modes(n_modes)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of: "
                             f"{', '.join(ACTIVATIONS)}")
        lifting_channels = 2 * hidden_channels if lifting_channels is None else lifting_channels
        projection_channels = (2 * hidden_channels if projection_channels is None
                               else projection_channels)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("hidden_channels", hidden_channels), ("n_layers", n_layers),
                            ("lifting_channels", lifting_channels),
                            ("projection_channels", projection_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_dims = len(self.n_modes)
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.positional_embedding = positional_embedding

        n_dims = self.n_dims
        lifted_in = in_channels + (n_dims if positional_embedding else 0)
        self.lifting = _channel_mlp(n_dims, lifted_in, lifting_channels, hidden_channels,
                                    activation)
        self.spectral = nn.ModuleList(
            SpectralConv(hidden_channels, hidden_channels, self.n_modes) for _ in range(n_layers)
        )
        self.skips = nn.ModuleList(
            _pointwise(n_dims, hidden_channels, hidden_channels, bias=False)
            for _ in range(n_layers)
        )
        self.activation = ACTIVATIONS[activation]()
        self.projection = _channel_mlp(n_dims, hidden_channels, projection_channels,
                                       out_channels, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, in_channels, *grid)
        self.check_input(x)
        if self.positional_embedding:
            coords = uniform_grid(x.shape[2:], device=x.device, dtype=x.dtype).movedim(-1, 0)
            # coords: (n_dims, *grid) -> (batch, n_dims, *grid)
            x = torch.cat([x, coords.expand(x.shape[0], *coords.shape)], dim=1)
        x = self.lifting(x)
        # x: (batch, hidden_channels, *grid)
        for i, (spectral, skip) in enumerate(zip(self.spectral, self.skips, strict=True)):
            x = spectral(x) + skip(x)
            if i < self.n_layers - 1:
                x = self.activation(x)
        return self.projection(x)  # (batch, out_channels, *grid)
