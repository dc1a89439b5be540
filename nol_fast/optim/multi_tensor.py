"""Former home of the multi-tensor optimizer step op, kept so that its public names import.

The op is whole in :mod:`nol_fast.ops.optim_step`: dispatch and backend selection in
:mod:`~nol_fast.ops.optim_step.op`, the reference in :mod:`~nol_fast.ops.optim_step.reference`.
"""

from nol_fast.ops.optim_step.op import (
    BACKENDS,
    ENV_VAR,
    adabound_step,
    adam_step,
    backend_status,
    check_backend_name,
    resolve_backend,
)

__all__ = ["BACKENDS", "ENV_VAR", "adabound_step", "adam_step", "backend_status",
           "check_backend_name", "resolve_backend"]
