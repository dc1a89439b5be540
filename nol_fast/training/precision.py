"""Mixed precision: which autocast dtype a device gets, and the matching GradScaler."""

from __future__ import annotations

import contextlib
import logging

import torch

logger = logging.getLogger(__name__)


def autocast_dtype(device: torch.device, mixed_precision: bool) -> torch.dtype | None:
    """The autocast dtype for ``device``, or ``None`` for full precision.

    CUDA gets bf16 where the GPU computes in it natively (:func:`cuda_bf16_is_native`),
    otherwise fp16 (with loss scaling). The CPU
    trains in fp32: CPU autocast is slower than fp32 on most CPUs and the FFTs of spectral
    layers have no bf16 CPU kernels, so the request is logged and ignored.
    """
    if not mixed_precision:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if cuda_bf16_is_native() else torch.float16
    logger.info("mixed_precision is ignored on %s: training in float32", device.type)
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
