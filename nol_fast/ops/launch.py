"""What the host code around every kernel launch shares: the device, Triton's availability.

- :func:`device_guard`: Triton and the CUDA extension launch on the *current* CUDA device and
  its current stream, not on the device of the tensors they are given. Every launch therefore
  runs inside ``device_guard(tensor.device)``; otherwise tensors on ``cuda:1`` would be
  updated by a kernel on ``cuda:0`` (an error, or with peer access a race against ``cuda:1``'s
  own work).
- :func:`triton_status`: whether the Triton kernels run on a device type here: CUDA tensors
  with ``triton`` installed, or CPU tensors when the kernels run in Triton's interpreter
  (``TRITON_INTERPRET=1`` set before :mod:`nol_fast.ops.triton` is first imported), which is
  how the tests run the backends end to end without a GPU.

Nothing here imports triton unless :func:`triton_status` is asked about a device.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os

import torch


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


INTERPRETER_VAR = "TRITON_INTERPRET"


@functools.cache
def _triton_import_error() -> str | None:
    """``None`` if :mod:`nol_fast.ops.triton` imports, else why not (once per process)."""
    try:
        importlib.import_module("nol_fast.ops.triton")
    except ImportError as error:
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed"
        return f"nol_fast.ops.triton cannot be imported ({error})"
    return None


def interpreter_requested() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for Triton's interpreter (set, and not ``0``)."""
    return os.environ.get(INTERPRETER_VAR, "0").lower() not in ("", "0", "false", "off")


def triton_status(device_type: str) -> str | None:
    """``None`` if the Triton kernels run on tensors of ``device_type`` here, else why not.

    CUDA tensors need a CUDA device and an importable :mod:`nol_fast.ops.triton`; CPU tensors
    need the kernels to run in Triton's interpreter.

    Examples
    --------
    >>> triton_status("meta")
    'runs on CUDA tensors only'
    """
    if device_type == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA device"
        return _triton_import_error()
    if device_type != "cpu" or not interpreter_requested():
        return "runs on CUDA tensors only" + (
            f" (or CPU tensors with {INTERPRETER_VAR}=1)" if device_type == "cpu" else "")
    reason = _triton_import_error()
    if reason is not None:
        return reason
    if not importlib.import_module("nol_fast.ops.triton").INTERPRETED:
        return (f"runs on CUDA tensors only: the Triton kernels were imported before "
                f"{INTERPRETER_VAR}=1 was set, so they are compiled for the GPU")
    return None
