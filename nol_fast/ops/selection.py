"""Backend selection of the fused physics ops: explicit name, environment, then automatic.

Every op has a ``reference`` backend (plain torch, any device) and faster ones that run on some
devices only. :class:`BackendSelection` holds one op's backends and decides which runs:

1. an explicit ``backend=`` argument, which must be available for the tensors' device, else a
   ``RuntimeError`` names the reason and the backends that are;
2. the ``NOL_FAST_BACKEND`` environment variable, when it names a backend of this op that can
   run on the device (the variable is shared by all ops, whose backend names differ, so a name
   this op lacks is ignored rather than an error);
3. automatic: the op's preference list for the device type, then ``reference``. A fall-back to
   ``reference`` where the device has a preferred backend is logged once.

Examples
--------
>>> def status(backend, device_type):
...     return None if backend == "reference" or device_type == "cpu" else "CPU only"
>>> selection = BackendSelection("demo", ("reference", "fast"), status, {"cpu": ("fast",)})
>>> selection.resolve(None, torch.device("cpu"))
'fast'
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

ENV_VAR = "NOL_FAST_BACKEND"

logger = logging.getLogger(__name__)


@functools.cache
def _log_fallback(op: str, device_type: str, reasons: str) -> None:
    logger.warning("%s: no fast backend for %s tensors (%s); using 'reference'", op,
                   device_type, reasons)


@dataclass(frozen=True)
class BackendSelection:
    """The backends of one op and the rule that picks one.

    Attributes
    ----------
    op
        The op's name, used in messages.
    backends
        Every backend name, ``'reference'`` first.
    status
        ``status(backend, device_type)``: ``None`` when the backend runs on tensors of that
        device type here, else the reason it does not.
    preference
        Device type -> backends to try, best first, before ``'reference'``.
    """

    op: str
    backends: tuple[str, ...]
    status: Callable[[str, str], str | None]
    preference: Mapping[str, tuple[str, ...]]

    def check(self, backend: str | None) -> None:
        """Raise ``ValueError`` unless ``backend`` is ``None``, ``'auto'`` or a backend name."""
        if backend is not None and backend != "auto" and backend not in self.backends:
            raise ValueError(f"unknown {self.op} backend {backend!r}; choose one of: "
                             f"{', '.join(self.backends)} (or None for automatic)")

    def available(self, device_type: str) -> list[str]:
        """The backends that can run on tensors of ``device_type`` here."""
        return [b for b in self.backends if self.status(b, device_type) is None]

    def resolve(self, backend: str | None, device: torch.device) -> str:
        """The backend that runs on ``device`` for the request ``backend`` (``None``: auto)."""
        self.check(backend)
        if backend not in (None, "auto"):
            reason = self.status(backend, device.type)
            if reason is not None:
                raise RuntimeError(
                    f"{self.op} backend {backend!r} is not available for {device.type} tensors "
                    f"({reason}); available: {', '.join(self.available(device.type))}"
                )
            return backend
        preferred = os.environ.get(ENV_VAR)
        if preferred in self.backends and self.status(preferred, device.type) is None:
            return preferred
        candidates = self.preference.get(device.type, ())
        for candidate in candidates:
            if self.status(candidate, device.type) is None:
                return candidate
        if candidates:
            reasons = "; ".join(f"{c}: {self.status(c, device.type)}" for c in candidates)
            _log_fallback(self.op, device.type, reasons)
        return "reference"
