"""Doctest collection over the package (``--doctest-modules``, see pyproject.toml).

Every module of ``nol_fast`` is imported for its examples, so a module that cannot be
imported here must be left out explicitly, and an example that needs an optional package or
a GPU is skipped, with the reason, where that is missing. The only other skips are examples
marked ``# doctest: +SKIP`` in their docstrings: those that write files or run a benchmark.
Every other example runs on any machine that installs the package.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import pytest
import torch


def _importable(name: str) -> bool:
    """Whether ``import name`` can find the package, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# The Triton kernels import triton at module level (nothing else in nol_fast does).
collect_ignore_glob = [] if _importable("triton") else ["nol_fast/ops/triton/*.py"]

# Doctest name prefix -> (what the examples need, whether this machine has it)
NEEDS: dict[str, tuple[str, Callable[[], bool]]] = {
    "nol_fast.models.interop.": ("neuraloperator", lambda: _importable("neuralop")),
    "nol_fast.models.fno.FNO.from_neuralop": ("neuraloperator", lambda: _importable("neuralop")),
    "nol_fast.models.fno.FNO.to_neuralop": ("neuraloperator", lambda: _importable("neuralop")),
    "nol_fast.ops.spectral_conv.cuda.": (
        "a CUDA device and triton", lambda: torch.cuda.is_available() and _importable("triton")),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.DoctestItem):
            continue
        for prefix, (needs, available) in NEEDS.items():
            if item.name.startswith(prefix) and not available():
                item.add_marker(pytest.mark.skip(reason=f"the example needs {needs}"))
