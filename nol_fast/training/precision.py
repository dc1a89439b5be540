"""Mixed precision: which autocast dtype a device gets, and the matching GradScaler.

CUDA gets bfloat16 where the GPU supports it, otherwise float16 with loss scaling. The CPU gets
bfloat16 where it has native bfloat16 arithmetic (AVX-512 BF16 or AMX): there the FNO's GEMMs run
at about twice their float32 speed and its activations take half the memory traffic. On other
CPUs bfloat16 is emulated and slower than float32, so training stays in float32 and says so once
in the log. Weights, optimizer state and losses stay float32 either way.
"""

from __future__ import annotations

import contextlib
import functools
import logging

import torch

logger = logging.getLogger(__name__)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX tiles).

    Asks torch's CPU feature checks; where this torch has none, the Linux CPU flags.

    Examples
    --------
    >>> isinstance(cpu_has_native_bf16(), bool)
    True
    """
    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(check) for check in checks):
        return any(check() for check in checks)
    try:
        with open("/proc/cpuinfo") as info:
            flags = info.read().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.cache
def _log_cpu_float32() -> None:
    logger.info("mixed_precision: this CPU has no native bfloat16 (AVX-512 BF16 or AMX); "
                "training in float32")


def autocast_dtype(device: torch.device, mixed_precision: bool) -> torch.dtype | None:
    """The autocast dtype for ``device``, or ``None`` for full precision (see the module doc)."""
    if not mixed_precision:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    if device.type == "cpu":
        _log_cpu_float32()
    else:
        logger.info("mixed_precision is not supported on %s: training in float32", device.type)
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype``, or a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16, the one dtype whose gradients underflow."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
