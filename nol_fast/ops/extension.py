"""The compiled extension ``nol_fast._C``, loaded once, or the reason it is missing.

``setup.py`` builds it from ``csrc/`` (and ``kernels/`` with CUDA); a package installed without a
compiler has no extension, and the ops then run on their other backends.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def _load() -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module("nol_fast._C"), None
    except ImportError as error:
        return None, f"nol_fast._C is not built ({error})"


EXTENSION, UNAVAILABLE = _load()


def missing(cuda: bool = False) -> str | None:
    """``None`` when the extension (built with CUDA, if ``cuda``) is loaded, else why not."""
    if EXTENSION is None:
        return UNAVAILABLE
    if cuda and not EXTENSION.has_cuda:
        return "nol_fast._C was built without CUDA (see NOL_FAST_BUILD_CUDA in setup.py)"
    return None
