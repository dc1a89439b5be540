"""Scratch buffers of one kernel call: named, reused within the call, freed when it returns.

The gradients between the layers of a block's backward pass live only inside one call, and
each is dead as soon as the next layer has read it. A :class:`Workspace` made for the call hands
out one buffer per name, so the call needs two or three activation-sized buffers whatever the
number of its layers.

The buffers are not kept between calls. They were, to spare a freshly allocated 4 MiB
activation its thousand page faults every step; the Trainer now keeps freed memory in the
process instead (:mod:`nol_fast.training.cpu_memory`), which spares every allocation those
faults, and buffers held between calls only added to the peak memory (12 MiB of an FNO step
on a 64² grid, for no measurable time).

A buffer must never escape the call that took it: not returned, not saved for backward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class Workspace:
    """Named scratch buffers of one call.

    Examples
    --------
    >>> ws = Workspace()
    >>> a = ws.take("grad", (4, 3), torch.float32)
    >>> b = ws.take("grad", (2, 5), torch.float32)
    >>> a.data_ptr() == b.data_ptr()
    True
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: Sequence[int], dtype: torch.dtype,
             device: torch.device | str = "cpu") -> torch.Tensor:
        """An uninitialised ``shape`` tensor in buffer ``name`` (valid until its next take)."""
        numel = math.prod(shape)
        buffer = self._buffers.get(name)
        if (buffer is None or buffer.numel() < numel or buffer.dtype != dtype
                or buffer.device != torch.device(device)):
            buffer = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[name] = buffer
        return buffer[:numel].view(shape)
