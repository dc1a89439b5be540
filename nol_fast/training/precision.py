"""Mixed precision: which autocast dtype a device gets, and the matching GradScaler.

CUDA gets bfloat16 where the GPU computes in it natively, otherwise float16 with loss scaling.
The CPU gets bfloat16 where it has native bfloat16 arithmetic (AVX-512 BF16 or AMX): there the
FNO's activations take half the memory traffic and its GEMMs run faster. On other CPUs bfloat16
is emulated and slower than float32, so training stays in float32 and says so once in the log.
An explicit ``amp_dtype`` of the training config overrides the choice on every device.
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


def choose_autocast(
    device: torch.device, mixed_precision: bool, amp_dtype: str | None = None
) -> tuple[torch.dtype | None, str]:
    """The autocast dtype for ``device`` (``None``: full precision) and why it was chosen.

    ``amp_dtype`` (``'bfloat16'`` or ``'float16'``) is taken as given; ``None`` picks as the
    module doc says.

    Examples
    --------
    >>> choose_autocast(torch.device("cpu"), mixed_precision=False)
    (None, 'mixed_precision=False')
    >>> choose_autocast(torch.device("cpu"), True, "float16")
    (torch.float16, 'amp_dtype=float16')
    """
    if not mixed_precision:
        return None, "mixed_precision=False"
    if amp_dtype is not None:
        return getattr(torch, amp_dtype), f"amp_dtype={amp_dtype}"
    if device.type == "cuda":
        if cuda_bf16_is_native():
            return torch.bfloat16, "the GPU computes in bfloat16 natively"
        return torch.float16, "the GPU has no native bfloat16 (fp16 with loss scaling)"
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16, "the CPU has native bfloat16 (AVX-512 BF16 or AMX)"
    if device.type == "cpu":
        _log_cpu_float32()
        return None, "the CPU has no native bfloat16"
    logger.info("mixed_precision is not supported on %s: training in float32", device.type)
    return None, f"no mixed precision on {device.type}"


def autocast_dtype(
    device: torch.device, mixed_precision: bool, amp_dtype: str | None = None
) -> torch.dtype | None:
    """The autocast dtype of :func:`choose_autocast`, without the reason."""
    return choose_autocast(device, mixed_precision, amp_dtype)[0]


def cuda_bf16_is_native() -> bool:
    """Whether the current GPU computes in bf16 natively (compute capability 8.0 and up).

    ``torch.cuda.is_bf16_supported()`` also says yes for pre-Ampere GPUs (V100, T4), which
    only emulate bf16, slowly; those train faster in fp16 with a GradScaler.
    """
    return torch.cuda.is_bf16_supported(including_emulation=False)


def autocast(
    device: torch.device, dtype: torch.dtype | None, cache_enabled: bool = True
) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype``, or a no-op context when ``dtype`` is None.

    ``cache_enabled=False`` casts the weights afresh in every region, as CUDA-graph capture
    needs: the cache would hold casts made during the capture and free them when the region
    ends, while the graph keeps their addresses.
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache_enabled)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16, the one dtype whose gradients underflow."""
    return ComplexGradScaler(device.type, enabled=dtype == torch.float16)


class ComplexGradScaler(torch.amp.GradScaler):
    """``torch.amp.GradScaler`` that also unscales complex gradients.

    torch's unscale kernel (``_amp_foreach_non_finite_check_and_unscale_``) takes no complex
    tensors, and an FNO's spectral weights are complex, so every fp16 step of an FNO would
    fail. Complex gradients are handed to it as their real views (the same memory), which
    unscales them in place and finds their infs and NaNs.
    """

    def _unscale_grads_(self, optimizer, inv_scale, found_inf, allow_fp16):
        return super()._unscale_grads_(_RealGradients(optimizer), inv_scale, found_inf,
                                       allow_fp16)


class _RealGradients:
    """Stands in for an optimizer in ``GradScaler._unscale_grads_``, which reads only
    ``param_groups[i]['params'][j].grad``: complex parameters become real views whose ``grad``
    is the real view of their gradient."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.param_groups = [{"params": [_real_view(p) for p in group["params"]]}
                             for group in optimizer.param_groups]


def _real_view(param: torch.Tensor) -> torch.Tensor:
    if not param.is_complex() or param.grad is None or param.grad.is_sparse:
        return param
    view = torch.view_as_real(param.detach())
    view.grad = torch.view_as_real(param.grad)
    return view
