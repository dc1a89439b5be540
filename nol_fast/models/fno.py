"""FNO: the Fourier neural operator of neuraloperator 2.0, layer for layer.

The default ``FNO(n_modes, in_channels, out_channels, hidden_channels)`` has the architecture
and the parameter count of neuraloperator's default ``FNO`` with the same arguments:

1. a grid positional embedding appends the coordinates of every point (``n_dims`` channels);
2. a two-layer channel MLP lifts to ``hidden_channels`` through ``2 * hidden_channels``;
3. optional domain padding pads the grid with zeros;
4. ``n_layers`` :class:`~nol_fast.models.layers.FNOBlock` s: a spectral convolution with a
   linear skip, then a channel MLP with a soft-gating skip, with activations between all but
   the last;
5. the padding is cropped and a two-layer channel MLP projects to ``out_channels``.

Every layer acts pointwise or on a fixed set of Fourier modes, so the same weights apply to
any grid size; ``output_shape`` and ``resolution_scaling_factor`` evaluate the output on a
different grid (super-resolution).

Layout: on the CPU, the activations between the input and the output live channels-last,
``(batch, *grid, channels)``, where every pointwise layer is one GEMM and each Fourier block
is one fused op (:mod:`nol_fast.ops.fno_block`); the layers' parameters, the state dict and
the input and output stay channels-first. Other devices, blocks that change the grid and
spectral layers given an explicit non-CPU backend run the channels-first layers.

:meth:`FNO.from_neuralop` and :meth:`FNO.to_neuralop` convert models (see
:mod:`nol_fast.models.interop`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nol_fast.models.base import NeuralOperatorBase
from nol_fast.models.layers import (
    ChannelMLP,
    FNOBlock,
    GridEmbedding,
    crop,
    normalize_padding,
    pad,
    padding_widths,
)
from nol_fast.models.layers.channel_mlp import check_activation
from nol_fast.models.registry import register_model
from nol_fast.models.spectral_conv import normalize_n_modes

Shape = tuple[int, ...]


def _scaling_factors(
    factor: float | Sequence[float | Sequence[float]] | None, n_layers: int, n_dims: int
) -> tuple[tuple[float, ...], ...] | None:
    """One tuple of per-dimension factors per layer, or ``None`` for no scaling.

    ``factor`` is one number for every layer and dimension, or one entry per layer, each a
    number or one number per dimension.
    """
    if factor is None:
        return None
    per_layer = [factor] * n_layers if isinstance(factor, numbers.Real) else list(factor)
    factors = []
    for entry in per_layer:
        dims = (entry,) * n_dims if isinstance(entry, numbers.Real) else tuple(entry)
        if len(dims) != n_dims or not all(isinstance(f, numbers.Real) and f > 0 for f in dims):
            factors = None
            break
        factors.append(tuple(float(f) for f in dims))
    if factors is None or len(factors) != n_layers:
        raise ValueError(
            f"resolution_scaling_factor must be a number > 0 or {n_layers} entries (one per "
            f"layer), each a number or {n_dims} numbers, got {factor!r}"
        )
    return tuple(factors)


@register_model("fno", "fourier_neural_operator")
class FNO(NeuralOperatorBase):
    """Fourier neural operator, matching neuraloperator 2.0's ``FNO``.

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
    lifting_channel_ratio, projection_channel_ratio : float
        Hidden width of the lifting and projection MLPs, ``int(ratio * hidden_channels)``.
        A lifting width of 0 makes the lifting a single linear map.
    positional_embedding : bool
        Append the grid coordinates ``j / n`` in ``[0, 1)`` as ``n_dims`` input channels.
    activation : {'gelu', 'relu', 'silu', 'tanh'}
        Activation of the lifting and projection MLPs and between the blocks.
    use_channel_mlp : bool
        Give every block a channel MLP after its convolution.
    channel_mlp_expansion : float
        Hidden width of those MLPs relative to ``hidden_channels``.
    channel_mlp_skip, fno_skip : {'linear', 'soft-gating', 'identity', None}
        Skip paths of the channel MLPs and of the spectral convolutions.
    domain_padding : float or sequence of float, optional
        Fraction of the grid size padded with zeros on both sides of every dimension (one
        fraction for all dimensions, or one each) before the blocks, and cropped after.
    resolution_scaling_factor : float or sequence, optional
        Grid scaling of every block (a number), or per block (a number or one per dimension
        each): block ``l`` outputs ``round(factor * n)`` points where it gets ``n``.

    Examples
    --------
    >>> model = FNO(n_modes=(12, 12), in_channels=1, out_channels=1, hidden_channels=32)
    >>> model(torch.randn(4, 1, 64, 64)).shape
    torch.Size([4, 1, 64, 64])
    >>> model(torch.randn(4, 1, 64, 64), output_shape=(128, 128)).shape
    torch.Size([4, 1, 128, 128])
    """

    def __init__(
        self,
        n_modes: int | Sequence[int],
        in_channels: int = 1,
        out_channels: int = 1,
        hidden_channels: int = 32,
        n_layers: int = 4,
        lifting_channel_ratio: float = 2,
        projection_channel_ratio: float = 2,
        positional_embedding: bool = True,
        activation: str = "gelu",
        use_channel_mlp: bool = True,
        channel_mlp_expansion: float = 0.5,
        channel_mlp_skip: str | None = "soft-gating",
        fno_skip: str | None = "linear",
        domain_padding: float | Sequence[float] | None = None,
        resolution_scaling_factor: float | Sequence[float | Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        self.n_modes = normalize_n_modes(n_modes)
        self.n_dims = n_dims = len(self.n_modes)
        check_activation(activation)
        lifting_channels = int(lifting_channel_ratio * hidden_channels)
        projection_channels = int(projection_channel_ratio * hidden_channels)
        for name, value, low in (("in_channels", in_channels, 1),
                                 ("out_channels", out_channels, 1),
                                 ("hidden_channels", hidden_channels, 1),
                                 ("n_layers", n_layers, 1),
                                 ("int(lifting_channel_ratio * hidden_channels)",
                                  lifting_channels, 0),
                                 ("int(projection_channel_ratio * hidden_channels)",
                                  projection_channels, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.lifting_channel_ratio = lifting_channel_ratio
        self.projection_channel_ratio = projection_channel_ratio
        self.activation = activation
        self.use_channel_mlp = use_channel_mlp
        self.channel_mlp_expansion = channel_mlp_expansion
        self.channel_mlp_skip = channel_mlp_skip
        self.fno_skip = fno_skip
        self.domain_padding = normalize_padding(domain_padding, n_dims)
        self.resolution_scaling_factor = _scaling_factors(resolution_scaling_factor, n_layers,
                                                          n_dims)

        self.embedding = GridEmbedding(n_dims) if positional_embedding else None
        lifted_in = in_channels + (n_dims if positional_embedding else 0)
        self.lifting = ChannelMLP(lifted_in, hidden_channels, lifting_channels,
                                  n_layers=2 if lifting_channels else 1, activation=activation)
        self.blocks = nn.ModuleList(
            FNOBlock(hidden_channels, self.n_modes, activation=activation,
                     last=i == n_layers - 1, use_channel_mlp=use_channel_mlp,
                     channel_mlp_expansion=channel_mlp_expansion, fno_skip=fno_skip,
                     channel_mlp_skip=channel_mlp_skip)
            for i in range(n_layers)
        )
        self.projection = ChannelMLP(hidden_channels, out_channels, projection_channels,
                                     activation=activation)

    @property
    def positional_embedding(self) -> bool:
        """Whether the grid coordinates are appended to the input."""
        return self.embedding is not None

    def _plan(self, grid: Shape, output_shape: Sequence[int] | None
              ) -> tuple[tuple[int, ...], list[Shape | None], tuple[int, ...]]:
        """Padding widths, the output grid of every block (``None``: unchanged), crop widths.

        Block grids live on the padded domain. The crop widths scale the padding with the
        grid: ``round(width * out / in)``, where ``out`` is the final unpadded grid when
        ``output_shape`` is given.
        """
        widths = (padding_widths(grid, self.domain_padding) if self.domain_padding
                  else (0,) * self.n_dims)
        padded = tuple(n + 2 * w for n, w in zip(grid, widths, strict=True))
        shapes: list[Shape | None] = []
        current = padded
        for factors in self.resolution_scaling_factor or [None] * self.n_layers:
            if factors is not None:
                current = tuple(round(n * f) for n, f in zip(current, factors, strict=True))
            shapes.append(current)
        if output_shape is not None:
            out = tuple(output_shape)
            if len(out) != self.n_dims or not all(isinstance(n, int) and n > 0 for n in out):
                raise ValueError(f"output_shape must be {self.n_dims} positive ints (one per "
                                 f"grid dimension), got {output_shape!r}")
            crops = tuple(round(w * o / n) for w, o, n in zip(widths, out, grid, strict=True))
            shapes[-1] = tuple(o + 2 * c for o, c in zip(out, crops, strict=True))
        else:
            crops = tuple(round(w * o / p)
                          for w, o, p in zip(widths, shapes[-1], padded, strict=True))
        inputs = [padded, *shapes[:-1]]
        return widths, [s if s != i else None for s, i in zip(shapes, inputs, strict=True)], crops

    def forward(self, x: torch.Tensor, output_shape: Sequence[int] | None = None
                ) -> torch.Tensor:
        """Apply the operator.

        Parameters
        ----------
        x : Tensor
            Input function, ``(batch, in_channels, *grid)``.
        output_shape : sequence of int, optional
            Grid of the output (super-resolution); the last block evaluates its output there.
            By default the input grid, scaled by ``resolution_scaling_factor`` if set.

        Returns
        -------
        Tensor
            ``(batch, out_channels, *output_grid)``.
        """
        # x: (batch, in_channels, *grid)
        self.check_input(x)
        widths, block_shapes, crops = self._plan(tuple(x.shape[2:]), output_shape)
        if self._channels_last_path(x, block_shapes):
            return self._forward_channels_last(x, widths, crops)
        return self._forward_channels_first(x, widths, block_shapes, crops)

    def _channels_last_path(self, x: torch.Tensor, block_shapes: list[Shape | None]) -> bool:
        """Whether the forward pass runs channels-last (see the module docstring)."""
        return (x.device.type == "cpu" and all(shape is None for shape in block_shapes)
                and all(block.spectral.backend in (None, "auto", "cpu") for block in self.blocks))

    def _forward_channels_first(self, x: torch.Tensor, widths: tuple[int, ...],
                                block_shapes: list[Shape | None], crops: tuple[int, ...]
                                ) -> torch.Tensor:
        if self.embedding is not None:
            x = self.embedding(x)
        x = self.lifting(x)
        # x: (batch, hidden_channels, *grid)
        if any(widths):
            x = pad(x, widths)
        for block, shape in zip(self.blocks, block_shapes, strict=True):
            x = block(x, output_shape=shape)
        if any(crops):
            x = crop(x, crops)
        return self.projection(x)  # (batch, out_channels, *output_grid)

    def _forward_channels_last(self, x: torch.Tensor, widths: tuple[int, ...],
                               crops: tuple[int, ...]) -> torch.Tensor:
        h = x.movedim(1, -1)
        # h: (batch, *grid, in_channels)
        if self.embedding is not None:
            h = self.embedding.forward_channels_last(h)
        h = self.lifting.forward_channels_last(h)
        if any(widths):
            h = pad(h, widths, channels_last=True)
        for block in self.blocks:
            h = block.forward_channels_last(h)
        if any(crops):
            h = crop(h, crops, channels_last=True)
        return self.projection.forward_channels_last(h).movedim(-1, 1).contiguous()

    @classmethod
    def from_neuralop(cls, model: Any) -> FNO:
        """Build the FNO equal to a neuraloperator ``FNO`` (or its ``state_dict()``).

        See :func:`nol_fast.models.interop.fno_from_neuralop`.

        Examples
        --------
        >>> import neuralop
        >>> theirs = neuralop.models.FNO((16, 16), 1, 1, 32)
        >>> FNO.from_neuralop(theirs).hidden_channels
        32
        """
        from nol_fast.models.interop import fno_from_neuralop

        return fno_from_neuralop(model)

    def to_neuralop(self) -> Any:
        """Build the neuraloperator ``FNO`` equal to this model.

        See :func:`nol_fast.models.interop.fno_to_neuralop`.

        Examples
        --------
        >>> theirs = FNO((16, 16), hidden_channels=32).to_neuralop()
        >>> type(theirs).__module__.split(".")[0]
        'neuralop'
        """
        from nol_fast.models.interop import fno_to_neuralop

        return fno_to_neuralop(self)
