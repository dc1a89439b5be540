"""The conservation reduction op ``nol_fast::conservation_sums``.

See :mod:`~nol_fast.ops.conservation.op` for the backends and their selection.
"""

from nol_fast.ops.conservation.op import BACKENDS, SELECTION, conservation_sums

__all__ = ["BACKENDS", "SELECTION", "conservation_sums"]
