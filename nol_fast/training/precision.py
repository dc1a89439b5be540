"""Mixed precision: which autocast dtype a device gets, and the matching GradScaler."""

from __future__ import annotations

import contextlib
import logging

import torch

logger = logging.getLogger(__name__)


def autocast_dtype(device: torch.device, mixed_precision: bool) -> torch.dtype | None:
    """The autocast dtype for ``device``, or ``None`` for full precision.

    CUDA gets bf16 where the GPU supports it, otherwise fp16 (with loss scaling). The CPU
    trains in fp32: CPU autocast is slower than fp32 on most CPUs and the FFTs of spectral
    layers have no bf16 CPU kernels, so the request is logged and ignored.
    """
    if not mixed_precision:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    logger.info("mixed_precision is ignored on %s: training in float32", device.type)
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype``, or a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16, the one dtype whose gradients underflow."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
