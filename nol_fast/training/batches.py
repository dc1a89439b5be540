"""What a data loader may yield, and moving it to the training device."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x, y)`` from a ``(x, y)`` tuple or list, or a dict with ``'x'`` and ``'y'``."""
    if isinstance(batch, Mapping):
        missing = [k for k in ("x", "y") if k not in batch]
        if missing:
            raise KeyError(
                f"a dict batch needs the keys 'x' and 'y'; missing {missing}, got keys "
                f"{sorted(map(str, batch))}"
            )
        x, y = batch["x"], batch["y"]
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        x, y = batch
    else:
        kind = type(batch).__name__
        size = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
        raise TypeError(
            f"a batch must be an (x, y) tuple or list, or a dict with 'x' and 'y'; got a "
            f"{kind}{size}"
        )
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"batch {name} must be a tensor, got {type(value).__name__}")
    return x, y


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to ``device`` without blocking the host (pinned host memory makes it async)."""
    return tensor.to(device, non_blocking=True)
