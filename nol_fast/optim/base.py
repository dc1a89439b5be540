"""The shared ``step`` of nol_fast's optimizers: gather each group's tensors, hand them to the op.

Every optimizer here keeps per-parameter state in lists that a multi-tensor step op
(:mod:`nol_fast.optim.multi_tensor`) updates in one call per parameter group. What differs
between algorithms is the state they keep (:meth:`MultiTensorOptimizer._state_of`) and the op
and hyper-parameters they call it with (:meth:`MultiTensorOptimizer._group_step`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from nol_fast.optim.multi_tensor import check_backend_name

_IS_SPARSE = operator.attrgetter("is_sparse")


class MultiTensorOptimizer(Optimizer):
    """Base class: closure handling, AMP hand-over and per-group tensor lists."""

    # torch.amp.GradScaler hands over grad_scale/found_inf instead of unscaling the grads.
    _step_supports_amp_scaling = True

    def __init__(self, params: Any, defaults: dict[str, Any], backend: str | None) -> None:
        """``backend`` names the multi-tensor op's implementation (None: chosen per device, see
        :mod:`nol_fast.optim.multi_tensor`). It is checked here, so an unknown name fails when
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
            optimizer (see :mod:`nol_fast.optim.multi_tensor`).

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
            self._group_step(group, lists, grad_scale, found_inf)
        return loss

    def _state_of(self, param: Tensor, group: dict[str, Any]) -> list[Tensor | None]:
        """``[exp_avg, exp_avg_sq, max_exp_avg_sq or None, step]`` of ``param``, created if new."""
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
