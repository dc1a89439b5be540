"""The shared ``step`` of nol_fast's optimizers: gather each group's tensors, hand them to the op.

Every optimizer here keeps per-parameter state in lists that a multi-tensor step op
(:mod:`nol_fast.ops.optim_step.op`) updates in one call per parameter group. What differs
between algorithms is the state they keep (:meth:`MultiTensorOptimizer._state_of`) and the op
and hyper-parameters they call it with (:meth:`MultiTensorOptimizer._group_step`).
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from nol_fast.ops.optim_step.op import check_backend_name

_IS_SPARSE = operator.attrgetter("is_sparse")
# Moments of low-precision params are kept in a wider type: bfloat16 second moments lose
# most of their digits, and the device kernels read float32 moments.
_MOMENT_DTYPES = {torch.bfloat16: torch.float32, torch.float16: torch.float32,
                  torch.complex32: torch.complex64}


def moment_dtype(param: Tensor) -> torch.dtype:
    """The dtype of the optimizer's moments of ``param``: float32 for bfloat16 and float16
    params (complex64 for complex32), the param's own dtype otherwise."""
    return _MOMENT_DTYPES.get(param.dtype, param.dtype)


def zeros_moment(param: Tensor) -> Tensor:
    """A zero moment buffer for ``param``: its shape and layout, in :func:`moment_dtype`."""
    return torch.zeros_like(param, dtype=moment_dtype(param),
                            memory_format=torch.preserve_format)


def step_counter(step: object, param: Tensor) -> Tensor:
    """``step`` as the float32 counter on ``param``'s device that the step op takes.

    Counters live on their parameter's device (as in ``torch.optim.Adam(fused=True)``), so
    a step on the GPU reads no counter back to the host; a counter loaded from elsewhere
    (another device, an integer from an older checkpoint) is converted once.
    """
    if isinstance(step, Tensor) and step.device == param.device and step.dtype == torch.float32:
        return step
    return torch.as_tensor(step, dtype=torch.float32).to(param.device)


class MultiTensorOptimizer(Optimizer):
    """Base class: closure handling, AMP hand-over and per-group tensor lists."""

    # torch.amp.GradScaler hands over grad_scale/found_inf instead of unscaling the grads.
    _step_supports_amp_scaling = True

    def __init__(self, params: Any, defaults: dict[str, Any], backend: str | None) -> None:
        """``backend`` names the multi-tensor op's implementation (None: chosen per device, see
        :mod:`nol_fast.ops.optim_step.op`). It is checked here, so an unknown name fails when
        the optimizer is made rather than at its first step."""
        check_backend_name(backend)
        self.backend = backend
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(
        self,
        closure: Callable[[], float] | None = None,
        grad_scale: Tensor | None = None,
        found_inf: Tensor | None = None,
    ) -> float | None:
        """Perform one optimization step.

        Parameters
        ----------
        closure
            Optional callable that re-evaluates the model and returns the loss.
        grad_scale, found_inf
            Mixed-precision tensors: gradients are divided by ``grad_scale``, and the step
            (step counters included) is skipped where ``found_inf`` is nonzero. Default to the
            ``grad_scale`` and ``found_inf`` attributes ``torch.amp.GradScaler`` sets on the
            optimizer (see :mod:`nol_fast.ops.optim_step.op`).

        Returns
        -------
        float or None
            The closure's loss, if a closure was given.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if grad_scale is None:
            grad_scale = getattr(self, "grad_scale", None)
        if found_inf is None:
            found_inf = getattr(self, "found_inf", None)

        for group in self.param_groups:
            # Comprehensions over whole lists: this loop runs every step, for every parameter.
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if any(map(_IS_SPARSE, grads)):
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            states = [self._state_of(p, group) for p in params]
            columns = zip(*states, strict=True)
            exp_avgs, exp_avg_sqs, maxima, steps = (list(column) for column in columns)
            max_exp_avg_sqs = [] if maxima[0] is None else maxima
            lists = (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps)
            dtensor = _dtensor_class()
            if dtensor is not None and isinstance(params[0], dtensor):
                lists = _local_shards(lists, dtensor)
            self._group_step(group, lists, grad_scale, found_inf)
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict, keeping the float32 moments of low-precision params.

        ``torch.optim.Optimizer.load_state_dict`` casts floating-point state to its param's
        dtype, which would round float32 moments of a bfloat16 param to bfloat16; they are
        taken from ``state_dict`` again, so a resumed run continues bit for bit.
        """
        super().load_state_dict(state_dict)
        saved_ids = (i for group in state_dict["param_groups"] for i in group["params"])
        params = (p for group in self.param_groups for p in group["params"])
        for saved_id, param in zip(saved_ids, params, strict=True):
            wide = moment_dtype(param)
            if wide == param.dtype or saved_id not in state_dict["state"]:
                continue
            for key, value in state_dict["state"][saved_id].items():
                if key != "step" and isinstance(value, Tensor) and value.dtype == wide:
                    self.state[param][key] = value.to(param.device, copy=True)

    def _state_of(self, param: Tensor, group: dict[str, Any]) -> list[Tensor | None]:
        """``[exp_avg, exp_avg_sq, max_exp_avg_sq or None, step]`` of ``param``, created if new.

        Moments are made by :func:`zeros_moment` and the counter by :func:`step_counter`.
        """
        raise NotImplementedError

    def _group_step(
        self,
        group: dict[str, Any],
        lists: tuple[list[Tensor], ...],
        grad_scale: Tensor | None,
        found_inf: Tensor | None,
    ) -> None:
        """Update one parameter group's tensors with the algorithm's multi-tensor op."""
        raise NotImplementedError


def _dtensor_class() -> type | None:
    """``DTensor`` if torch's distributed tensors are in use (their module is imported), else
    None; importing that module only to find out would add seconds to every start-up."""
    module = sys.modules.get("torch.distributed.tensor")
    return None if module is None else module.DTensor


def _local_shards(lists: tuple[list[Tensor], ...], dtensor: type) -> tuple[list[Tensor], ...]:
    """The lists with each DTensor (FSDP2's sharded parameters, their gradients and the state
    made for them) as its local shard.

    The update is elementwise, so each rank updates its own shard, in place, and the step ops
    see plain tensors; under ``no_grad`` ``to_local`` returns the shard itself. The state
    stays a DTensor, so sharded checkpoints save it as such.
    """
    return tuple([t.to_local() if isinstance(t, dtensor) else t for t in seq] for seq in lists)
