"""Scratch buffers that CPU kernels reuse from call to call, per thread.

A large tensor freshly allocated on the CPU comes from pages the kernel maps on first touch:
a 4 MiB activation costs a thousand page faults each time it is allocated again, which in an
FNO training step added up to several milliseconds (3,400 faults per step in the blocks'
backward pass). Temporaries that live only inside one call (the gradients between the layers
of a block's backward pass) take their memory from here instead: one buffer per name, grown
when a call needs more, so the same pages serve every step.

A buffer must never escape the call that took it: not returned, not saved for backward.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import torch


class Workspace(threading.local):
    """Named scratch buffers of the current thread.

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

    def nbytes(self) -> int:
        """Bytes held by this thread's buffers (they stay allocated between calls)."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


WORKSPACE = Workspace()
