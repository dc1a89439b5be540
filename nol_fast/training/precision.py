"""Mixed precision: which autocast dtype a device gets, and the matching GradScaler.

CUDA gets bfloat16 where the GPU computes in it natively, otherwise float16 with loss scaling.
The CPU gets bfloat16 where it has native bfloat16 arithmetic (AVX-512 BF16 or AMX): there the
FNO's activations take half the memory traffic and its GEMMs run faster. On other CPUs bfloat16
is emulated and slower than float32, so training stays in float32 and says so once in the log.
Weights, optimizer state and losses stay float32 either way.
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
        return torch.bfloat16 if cuda_bf16_is_native() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    if device.type == "cpu":
        _log_cpu_float32()
    else:
        logger.info("mixed_precision is not supported on %s: training in float32", device.type)
    return None


def cuda_bf16_is_native() -> bool:
    """Whether the current GPU computes in bf16 natively (compute capability 8.0 and up).

    ``torch.cuda.is_bf16_supported()`` also says yes for pre-Ampere GPUs (V100, T4), which
    only emulate bf16, slowly; those train faster in fp16 with a GradScaler.
    """
    return torch.cuda.is_bf16_supported(including_emulation=False)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype``, or a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16, the one dtype whose gradients underflow."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
