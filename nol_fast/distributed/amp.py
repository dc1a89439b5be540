"""Mixed precision that stays the same on every rank.

The autocast dtype follows each device's abilities (:mod:`nol_fast.training.precision`), so
ranks on different hardware could pick different ones; :func:`agree_on_autocast_dtype` picks
one that suits all. With fp16, the ``GradScaler`` skips a step when it finds an inf or NaN in
the gradients; under a sharding strategy each rank sees only its shard of them, so
:class:`RankConsistentGradScaler` shares the finding and every rank skips the same steps and
keeps the same scale.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import torch
import torch.distributed as dist

from nol_fast.distributed import collectives

logger = logging.getLogger(__name__)


def agree_on_autocast_dtype(dtype: torch.dtype | None, group: Any) -> torch.dtype | None:
    """The autocast dtype every rank uses: the ranks' common choice, else float16 if all chose
    a 16-bit type (float16 runs everywhere bfloat16 does), else full precision (None)."""
    choices = collectives.gather(None if dtype is None else str(dtype), group)
    if len(set(choices)) == 1:
        return dtype
    agreed = torch.float16 if None not in choices else None
    logger.warning("the ranks' devices chose different autocast dtypes (%s); all use %s",
                   ", ".join(sorted(set(map(str, choices)))), agreed or "float32")
    return agreed


class RankConsistentGradScaler(torch.amp.GradScaler):
    """``torch.amp.GradScaler`` whose inf/NaN check covers the gradients of all ranks.

    Gradients may be DTensors (FSDP2's sharded gradients): each rank unscales its local shard
    and the ranks all-reduce (max) what they found, so all skip the same steps and update the
    scale alike.
    """

    def _unscale_grads_(
        self,
        optimizer: torch.optim.Optimizer,
        inv_scale: torch.Tensor,
        found_inf: torch.Tensor,
        allow_fp16: bool,
    ) -> dict[torch.device, torch.Tensor]:
        grads: dict[torch.dtype, list[torch.Tensor]] = defaultdict(list)
        for group in optimizer.param_groups:
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                if not allow_fp16 and grad.dtype == torch.float16:
                    raise ValueError("Attempting to unscale FP16 gradients.")
                if grad.is_sparse:
                    raise ValueError("RankConsistentGradScaler does not take sparse gradients")
                if hasattr(grad, "to_local"):
                    grad = grad.to_local()
                if grad.is_complex():
                    grad = torch.view_as_real(grad)
                grads[grad.dtype].append(grad)
        with torch.no_grad():
            for tensors in grads.values():
                devices = {t.device for t in tensors}
                if devices != {found_inf.device}:
                    raise ValueError(f"gradients on {sorted(map(str, devices))} but the scaler "
                                     f"is on {found_inf.device}: one device per rank")
                torch._amp_foreach_non_finite_check_and_unscale_(tensors, found_inf, inv_scale)
            dist.all_reduce(found_inf, op=dist.ReduceOp.MAX)
        return {found_inf.device: found_inf}
