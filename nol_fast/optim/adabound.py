"""AdaBound and AMSBound: Adam whose per-element step size is clipped into bounds that close in
on an SGD learning rate as training goes on.

The update follows the ``adabound`` 0.0.5 package operation for operation, so trajectories
agree with it to the last bit, and fixes what that package gets wrong for a training library:
each parameter group keeps its own base learning rate in ``group['base_lr']`` (set on
construction *and* by :meth:`AdaBound.add_param_group`, and saved by ``state_dict()``), a zero
learning rate gives a zero step instead of a division by zero, complex parameters are updated
through their real view, and decoupled (AdamW-style) weight decay is available.

The arithmetic of one parameter is :func:`~nol_fast.ops.optim_step.reference.adabound_update_`
(importable from here too), which the reference backend of the multi-tensor op
:func:`nol_fast.ops.optim_step.op.adabound_step` applies tensor by tensor; the optimizer steps
through that op, so faster backends plug in behind the same class, and it takes
``grad_scale``/``found_inf`` from ``torch.amp.GradScaler``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from nol_fast.ops.optim_step.op import adabound_step
from nol_fast.ops.optim_step.reference import adabound_update_
from nol_fast.optim.base import MultiTensorOptimizer, step_counter, zeros_moment

__all__ = ["AdaBound", "adabound_update_"]


class AdaBound(MultiTensorOptimizer):
    """AdaBound (Luo et al., ICLR 2019): Adam with dynamic bounds on the step size.

    Early on the bounds are loose and the optimizer behaves like Adam; as the step count ``t``
    grows they tighten around ``final_lr``, so it ends up behaving like SGD with that learning
    rate. See :func:`~nol_fast.ops.optim_step.reference.adabound_update_` for the exact
    update.

    Parameters
    ----------
    params
        Parameters or parameter-group dicts, as for any ``torch.optim`` optimizer.
    lr
        Adam learning rate (``>= 0``).
    betas
        Decay rates of the first and second moment averages, each in ``[0, 1)``.
    final_lr
        SGD learning rate the bounds converge to (``>= 0``). It is scaled by
        ``lr / group['base_lr']``, so schedulers that change ``lr`` move the bounds as well.
    gamma
        Convergence speed of the bounds, in ``[0, 1)``; ``0`` leaves the step unbounded above
        and unclipped below (plain Adam).
    eps
        Added to the denominator for numerical stability (``>= 0``).
    weight_decay
        Weight-decay factor (``>= 0``).
    amsbound
        Normalise by the running maximum of the second moment (the AMSBound variant).
    decoupled_weight_decay
        Decay weights as ``p *= 1 - lr * weight_decay`` (AdaBoundW) instead of adding
        ``weight_decay * p`` to the gradient.
    backend
        Backend of the multi-tensor op, or ``None`` for automatic selection (see
        :func:`~nol_fast.ops.optim_step.op.resolve_backend`).

    Examples
    --------
    >>> model = torch.nn.Linear(4, 2)
    >>> optimizer = AdaBound(model.parameters(), lr=1e-3, final_lr=0.1)
    >>> model(torch.randn(8, 4)).square().mean().backward()
    >>> optimizer.step()
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        final_lr: float = 0.1,
        gamma: float = 1e-3,
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsbound: bool = False,
        decoupled_weight_decay: bool = False,
        backend: str | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "final_lr": final_lr,
            "gamma": gamma,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsbound": amsbound,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults, backend)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group, checking its hyper-parameters and recording its base lr.

        ``param_group['base_lr']`` defaults to the group's ``lr``; the bounds of the group are
        scaled by ``lr / base_lr`` from then on.
        """
        _check_hyperparameters({**self.defaults, **param_group})
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.setdefault("base_lr", group["lr"])

    def _group_step(
        self,
        group: dict[str, Any],
        lists: tuple[list[Tensor], ...],
        grad_scale: Tensor | None,
        found_inf: Tensor | None,
    ) -> None:
        beta1, beta2 = group["betas"]
        adabound_step(
            *lists,
            lr=group["lr"],
            base_lr=group["base_lr"],
            beta1=beta1,
            beta2=beta2,
            final_lr=group["final_lr"],
            gamma=group["gamma"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            decoupled=group["decoupled_weight_decay"],
            amsbound=group["amsbound"],
            grad_scale=grad_scale,
            found_inf=found_inf,
            backend=self.backend,
        )

    def _state_of(self, param: Tensor, group: dict[str, Any]) -> list[Tensor | None]:
        state = self.state[param]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
            state["exp_avg"] = zeros_moment(param)
            state["exp_avg_sq"] = zeros_moment(param)
            if group["amsbound"]:
                state["max_exp_avg_sq"] = zeros_moment(param)
        state["step"] = step_counter(state["step"], param)
        maximum = state["max_exp_avg_sq"] if group["amsbound"] else None
        return [state["exp_avg"], state["exp_avg_sq"], maximum, state["step"]]


def _check_hyperparameters(group: dict[str, Any]) -> None:
    """Raise ValueError naming the first hyper-parameter of ``group`` out of its range."""
    for name in ("lr", "final_lr", "eps", "weight_decay"):
        if not group[name] >= 0:
            raise ValueError(f"AdaBound: {name} must be >= 0, got {group[name]!r}")
    if "base_lr" in group and not group["base_lr"] >= 0:
        raise ValueError(f"AdaBound: base_lr must be >= 0, got {group['base_lr']!r}")
    betas = group["betas"]
    if len(betas) != 2:
        raise ValueError(f"AdaBound: betas must be a pair (beta1, beta2), got {betas!r}")
    for index, beta in enumerate(betas):
        if not 0 <= beta < 1:
            raise ValueError(f"AdaBound: betas[{index}] must be in [0, 1), got {beta!r}")
    if not 0 <= group["gamma"] < 1:
        raise ValueError(f"AdaBound: gamma must be in [0, 1), got {group['gamma']!r}")
