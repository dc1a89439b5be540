"""Pointwise (channel) layers in channels-last layout: the ``nol_fast::channel_mlp`` op and the
fused C++ epilogues it shares with :mod:`nol_fast.ops.fno_block`."""

from nol_fast.ops.pointwise.op import BACKENDS, channel_mlp, resolve_layer_backend
from nol_fast.ops.pointwise.reference import ACTIVATIONS

__all__ = ["ACTIVATIONS", "BACKENDS", "channel_mlp", "resolve_layer_backend"]
