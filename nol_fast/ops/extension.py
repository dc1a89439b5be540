"""The compiled extension ``nol_fast._C``, loaded once, or the reason it is missing.

``setup.py`` builds it from ``csrc/`` (and ``kernels/`` with CUDA). A package installed without a
compiler, or built with ``NOL_FAST_BUILD_EXT=0``, has no extension; one whose extension cannot
be loaded here (a wheel built for a newer glibc, a damaged file) warns once, with the loader's
reason. Either way the ops run on their other backends (reference, Triton).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

MODULE = "nol_fast._C"


def _load() -> tuple[ModuleType | None, str | None]:
    """``(the extension, None)``, or ``(None, why it is missing)``, warning if it is broken."""
    try:
        return importlib.import_module(MODULE), None
    except ImportError as error:
        if isinstance(error, ModuleNotFoundError) and error.name == MODULE:
            return None, (f"{MODULE} is not built (installed without a C++ compiler, or with "
                          "NOL_FAST_BUILD_EXT=0)")
        reason = f"{MODULE} cannot be loaded: {error}"
        warnings.warn(
            f"{reason}. nol_fast runs its ops on the reference and Triton backends instead; "
            "install a build of nol-fast made for this machine (docs/building-wheels.md).",
            RuntimeWarning,
            stacklevel=1,
        )
        return None, reason


EXTENSION, UNAVAILABLE = _load()


@functools.cache
def _cuda_runtime_error() -> str:
    """Why the extension's CUDA kernels cannot run in this process ('' when they can); asked
    once, since the answer (driver, devices) does not change while the process lives."""
    return EXTENSION.cuda_runtime_error()


def missing(cuda: bool = False) -> str | None:
    """``None`` when the extension (built with CUDA, if ``cuda``) is loaded, else why not.

    With ``cuda``, a CUDA build whose kernels cannot run here (a driver older than the CUDA
    runtime it was built with, or no device) is missing too; the first such call initialises
    the CUDA runtime.
    """
    if EXTENSION is None:
        return UNAVAILABLE
    if not cuda:
        return None
    if not EXTENSION.has_cuda:
        return f"{MODULE} was built without CUDA (see NOL_FAST_BUILD_CUDA in setup.py)"
    error = _cuda_runtime_error()
    return f"the CUDA kernels of {MODULE} cannot run here: {error}" if error else None


def build_info() -> dict[str, Any]:
    """How the loaded extension was built, or why there is none.

    Returns
    -------
    dict
        ``{'extension': 'loaded'}`` plus the extension's record: ``version`` (the package
        version it was built as, with a local label such as ``+cu130``), ``compiler``,
        ``cuda`` (the CUDA runtime version, or ``None`` for a CPU-only build) and
        ``cuda_archs`` (``'80;90'``, or ``''``); or ``{'extension': <why it is missing>}``
        (or why its record is).

    Examples
    --------
    >>> sorted(build_info())  # doctest: +SKIP
    ['compiler', 'cuda', 'cuda_archs', 'extension', 'version']
    """
    if EXTENSION is None:
        return {"extension": UNAVAILABLE}
    # An extension built in place from an older source has no record until it is rebuilt.
    record = getattr(EXTENSION, "build_info", None)
    if record is None:
        return {"extension": f"{MODULE} is loaded but has no build record (built from an older "
                             "source; reinstall to rebuild it)"}
    return {"extension": "loaded", **record}


def build_summary() -> str:
    """One line on the compiled extension for ``nol-fast info``: how it was built, or why it
    is missing.

    Examples
    --------
    >>> build_summary()  # doctest: +SKIP
    'nol_fast._C loaded: built as nol-fast 0.1.0 by gcc 12.2.0; CPU kernels, no CUDA kernels'
    """
    info = build_info()
    if EXTENSION is None:
        return f"{info['extension']}; the ops run on their reference and Triton backends"
    if info["extension"] != "loaded":
        return info["extension"]
    cpu = "CPU kernels (bfloat16 products on AMX)" if amx_enabled() else "CPU kernels"
    if info["cuda"] is None:
        kernels = f"{cpu}, no CUDA kernels"
    else:
        archs = info["cuda_archs"].split(";")
        kernels = (f"{cpu}, CUDA {info['cuda']} kernels for "
                   f"{', '.join(f'sm_{arch}' for arch in archs)} (PTX for compute_{archs[-1]})")
    return f"{MODULE} loaded: built as nol-fast {info['version']} by {info['compiler']}; {kernels}"


def amx_enabled() -> bool:
    """Whether the bfloat16 CPU kernels run their products on AMX tiles in this process: the
    extension is loaded, the CPU has AMX with bfloat16 (Sapphire Rapids and later Xeons), the
    OS granted the tile registers, and :func:`amx_kernels` has not turned them off."""
    return EXTENSION is not None and EXTENSION.amx_enabled()


@contextlib.contextmanager
def amx_kernels(enabled: bool) -> Iterator[None]:
    """Within the block, let the bfloat16 CPU kernels use AMX tiles where the CPU has them
    (``True``, the default), or run them on their AVX-512 FMA loops (``False``), as on CPUs
    without AMX. The switch is process-wide; it is there to compare the two.

    Examples
    --------
    >>> with amx_kernels(False):  # doctest: +SKIP
    ...     grad = reduce_rows(a, b)  # the FMA loops, even on a CPU with AMX
    """
    if EXTENSION is None:
        yield
        return
    previous = EXTENSION.set_amx_enabled(enabled)
    try:
        yield
    finally:
        EXTENSION.set_amx_enabled(previous)
