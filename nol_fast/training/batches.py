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
    """Copy to ``device`` without blocking the host.

    A copy to a GPU from pageable host memory first waits for the device's queue (the CUDA
    driver synchronises the stream), so a CPU tensor that is not pinned is staged in pinned
    memory first, as ``DataLoader(pin_memory=True)`` would have done.
    """
    if device.type == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
