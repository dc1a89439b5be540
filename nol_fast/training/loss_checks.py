"""Argument checks shared by the losses of :mod:`nol_fast.training.losses`.

Each raises with a message that names the offending value, so a misconfigured loss fails at
the call that misconfigures it.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_weight(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number >= 0, else raise a ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_field(name: str, u: object) -> None:
    """Raise unless ``u`` is a tensor of shape ``(batch, channels, *grid)``, 1 to 3 grid dims."""
    if not isinstance(u, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(u).__name__}")
    if not 3 <= u.ndim <= 5:
        raise ValueError(
            f"{name} must have shape (batch, channels, *grid) with 1, 2 or 3 grid dims, "
            f"got shape {tuple(u.shape)}"
        )


def check_same_shape(pred: Tensor, other: Tensor, other_name: str) -> None:
    """Raise unless ``pred`` and ``other`` have one shape; the message shows both."""
    if pred.shape != other.shape:
        raise ValueError(
            f"pred and {other_name} must have the same shape, got pred {tuple(pred.shape)} "
            f"and {other_name} {tuple(other.shape)}"
        )


def check_scalar(what: str, value: object) -> Tensor:
    """Return ``value`` if it is a 0-dim floating-point tensor, else raise."""
    if not isinstance(value, Tensor) or value.ndim != 0 or not value.is_floating_point():
        got = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{what} must return a 0-dim floating-point tensor, got {got}")
    return value


def upcast(x: Tensor) -> Tensor:
    """Accumulate float16/bfloat16 tensors in float32: their sums lose too many digits."""
    return x.float() if x.dtype in _LOW_PRECISION else x


def mean_square(what: str, value: object, batch: int) -> Tensor:
    """Mean square of the pointwise tensor ``value`` of shape ``(batch, ...)``."""
    if not isinstance(value, Tensor) or not value.is_floating_point():
        got = f"dtype {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
        raise TypeError(f"{what} must return a real floating-point tensor, got {got}")
    if value.ndim == 0 or value.shape[0] != batch or value.numel() == 0:
        raise ValueError(
            f"{what} must return a non-empty pointwise tensor of shape (batch, ...) with "
            f"batch={batch}, got shape {tuple(value.shape)}"
        )
    return upcast(value).square().mean()
