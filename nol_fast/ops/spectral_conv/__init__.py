"""The spectral convolution op ``nol_fast::spectral_conv`` and its backends.

:func:`spectral_conv` is the functional entry point; :class:`nol_fast.models.SpectralConv`
wraps it in a layer. See :mod:`~nol_fast.ops.spectral_conv.op` for backend selection.
"""

from nol_fast.ops.spectral_conv.modes import ModeIndex, mode_index, normalize_n_modes
from nol_fast.ops.spectral_conv.op import BACKENDS, ENV_VAR, resolve_backend, spectral_conv

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "ModeIndex",
    "mode_index",
    "normalize_n_modes",
    "resolve_backend",
    "spectral_conv",
]
