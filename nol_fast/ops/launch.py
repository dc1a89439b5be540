"""What the host code around every kernel launch shares: device, graph capture, Triton.

- :func:`device_guard`: Triton and the CUDA extension launch on the *current* CUDA device and
  its current stream, not on the device of the tensors they are given. Every launch therefore
  runs inside ``device_guard(tensor.device)``; otherwise tensors on ``cuda:1`` would be
  updated by a kernel on ``cuda:0`` (an error, or with peer access a race against ``cuda:1``'s
  own work).
- :func:`capturing` and :func:`pinned_cache`: the kernels read small tables (addresses, mode
  positions) that the host builds once and caches on the device. A captured CUDA graph keeps
  the raw addresses of the tables it read, so a table used during a capture must never be
  freed. ``pinned_cache`` is an LRU cache whose entries, once used while a graph is being
  captured, stay for the rest of the process (no API says when a graph is freed).
- :func:`triton_status`: whether the Triton kernels run on a device type here: CUDA tensors
  with ``triton`` installed, or CPU tensors when the kernels run in Triton's interpreter
  (``TRITON_INTERPRET=1`` set before :mod:`nol_fast.ops.triton` is first imported), which is
  how the tests run the backends end to end without a GPU.

Nothing here imports triton, nor the kernels (they import this module).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib.util
import os
import sys
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def device_guard(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that makes ``device`` the current CUDA device; a no-op for other devices.

    Examples
    --------
    >>> with device_guard(torch.device("cpu")):
    ...     pass
    """
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def capturing() -> bool:
    """Whether the current CUDA stream is capturing a CUDA graph (``False`` without CUDA)."""
    return torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing()


def pinned_cache(maxsize: int) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator: an LRU cache of ``maxsize`` entries that never evicts what a capture used.

    The decorated function takes hashable positional arguments (the key) and builds a value
    that holds device tensors. A lookup (or a build) while :func:`capturing` moves the entry
    to a pinned set that is never evicted, so the addresses that the captured graph keeps
    stay valid for the graph's lifetime. ``cache_clear()`` empties the LRU part only;
    ``pinned`` is the pinned set.

    Examples
    --------
    >>> @pinned_cache(maxsize=2)
    ... def squares(n):
    ...     return torch.arange(n) ** 2
    >>> squares(3) is squares(3)
    True
    """

    def decorate(build: Callable[..., T]) -> Callable[..., T]:
        entries: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
        pinned: dict[Hashable, Any] = {}

        @functools.wraps(build)
        def cached(*key: Hashable) -> T:
            if key in pinned:
                return pinned[key]
            if key in entries:
                entries.move_to_end(key)
                value = entries[key]
            else:
                value = entries[key] = build(*key)
                if len(entries) > maxsize:
                    entries.popitem(last=False)
            if capturing():
                pinned[key] = entries.pop(key)
            return value

        cached.cache_clear = entries.clear  # type: ignore[attr-defined]
        cached.pinned = pinned  # type: ignore[attr-defined]
        return cached

    return decorate


INTERPRETER_VAR = "TRITON_INTERPRET"
KERNELS = "nol_fast.ops.triton"


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreter_requested() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for Triton's interpreter (as Triton reads it)."""
    return os.environ.get(INTERPRETER_VAR, "0").lower() in ("1", "true", "yes", "on", "y")


def _kernels_interpreted() -> bool:
    """Whether the kernels of :mod:`nol_fast.ops.triton` run in the interpreter.

    Their mode is fixed when that package is first imported; before, it follows the
    environment. Read from ``sys.modules``, so this module never imports the kernels (which
    import it).
    """
    kernels = sys.modules.get(KERNELS)
    return getattr(kernels, "INTERPRETED", interpreter_requested())


def triton_status(device_type: str) -> str | None:
    """``None`` if the Triton kernels run on tensors of ``device_type`` here, else why not.

    CUDA tensors need a CUDA device and the ``triton`` package; CPU tensors need the kernels
    to run in Triton's interpreter.

    Examples
    --------
    >>> triton_status("meta")
    'runs on CUDA tensors only'
    """
    if device_type == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA device"
        return None if _triton_installed() else "triton is not installed"
    if device_type != "cpu" or not interpreter_requested():
        return "runs on CUDA tensors only" + (
            f" (or CPU tensors with {INTERPRETER_VAR}=1)" if device_type == "cpu" else "")
    if not _triton_installed():
        return "triton is not installed"
    if not _kernels_interpreted():
        return (f"runs on CUDA tensors only: the Triton kernels were imported before "
                f"{INTERPRETER_VAR}=1 was set, so they are compiled for the GPU")
    return None
