"""Building blocks of the FNO: pointwise maps, skips, embedding, padding, Fourier blocks.

Each module holds one layer kind of neuraloperator 2.0's FNO, written for this library; see
``docs/models.md`` for how their weights map to neuraloperator's.
"""

from nol_fast.models.layers.channel_mlp import ACTIVATIONS, ChannelMLP, Pointwise
from nol_fast.models.layers.embedding import GridEmbedding
from nol_fast.models.layers.fno_block import FNOBlock
from nol_fast.models.layers.padding import crop, normalize_padding, pad, padding_widths
from nol_fast.models.layers.resample import resample
from nol_fast.models.layers.skip import SKIP_KINDS, SoftGating, skip_connection

__all__ = [
    "ACTIVATIONS",
    "SKIP_KINDS",
    "ChannelMLP",
    "FNOBlock",
    "GridEmbedding",
    "Pointwise",
    "SoftGating",
    "crop",
    "normalize_padding",
    "pad",
    "padding_widths",
    "resample",
    "skip_connection",
]
