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

    from nol_fast.ops.conservation import op as conservation
    from nol_fast.ops.darcy_residual import op as darcy_residual
    from nol_fast.ops.navier_stokes_residual import op as navier_stokes_residual
    from nol_fast.ops.optim_step import op as optim_step
    from nol_fast.ops.pointwise import op as pointwise
    from nol_fast.ops.spectral_conv import op as spectral_conv

    def status(check, backend: str, device_type: str) -> str:
        reason = check(backend, device_type)
        if reason is None and device_type == "cuda" and not torch.cuda.is_available():
            reason = "no CUDA device"
        return "available" if reason is None else f"unavailable: {reason}"

    def optimizer_check(backend: str, device_type: str) -> str | None:
        return optim_step.backend_status(backend, torch.device(device_type))

    ops = {
        "spectral_conv": (spectral_conv.backend_status, spectral_conv.BACKENDS),
        "optimizer_step": (optimizer_check, optim_step.BACKENDS),
        # the channels-last FNO layers (fno_block, channel_mlp) share one backend choice
        "fno_layers": (pointwise.backend_status, pointwise.BACKENDS),
        "darcy_residual": (darcy_residual.backend_status, darcy_residual.BACKENDS),
        "navier_stokes_residual": (navier_stokes_residual.backend_status,
                                   navier_stokes_residual.BACKENDS),
        "conservation": (conservation.backend_status, conservation.BACKENDS),
    }
    return {
        name: {d: {b: status(check, b, d) for b in names} for d in DEVICE_TYPES}
        for name, (check, names) in ops.items()
    }
