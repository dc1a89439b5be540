"""Which backend of each custom op can run here, per device type, and why not.

The report imports the ops (and torch) only when called, so ``import nol_fast`` stays light.

Examples
--------
>>> from nol_fast import backends
>>> backends()["spectral_conv"]["cpu"]["cpu"]
'available'
"""

from __future__ import annotations

DEVICE_TYPES = ("cpu", "cuda")


def backends() -> dict[str, dict[str, dict[str, str]]]:
    """Report the backends of every op: ``{op: {device_type: {backend: status}}}``.

    ``status`` is ``'available'`` or ``'unavailable: <reason>'`` (for example
    ``'unavailable: no CUDA device'`` or ``'unavailable: triton is not installed'``).

    Examples
    --------
    >>> sorted(backends()["spectral_conv"])
    ['cpu', 'cuda']
    """
    import torch

    from nol_fast.ops.spectral_conv.op import BACKENDS, backend_status

    def status(backend: str, device_type: str) -> str:
        reason = backend_status(backend, device_type)
        if reason is None and device_type == "cuda" and not torch.cuda.is_available():
            reason = "no CUDA device"
        return "available" if reason is None else f"unavailable: {reason}"

    return {"spectral_conv": {d: {b: status(b, d) for b in BACKENDS} for d in DEVICE_TYPES}}
