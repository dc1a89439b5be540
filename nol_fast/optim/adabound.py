"""AdaBound and AMSBound: Adam whose per-element step size is clipped into bounds that close in
on an SGD learning rate as training goes on.

The update follows the ``adabound`` 0.0.5 package operation for operation, so trajectories
agree with it to the last bit, and fixes what that package gets wrong for a training library:
each parameter group keeps its own base learning rate in ``group['base_lr']`` (set on
construction *and* by :meth:`AdaBound.add_param_group`, and saved by ``state_dict()``), a zero
learning rate gives a zero step instead of a division by zero, complex parameters are updated
through their real view, and decoupled (AdamW-style) weight decay is available.

The arithmetic of one parameter lives in :func:`adabound_update_`, which the reference backend
of :func:`nol_fast.optim.multi_tensor.adabound_step` applies tensor by tensor; the optimizer
steps through that multi-tensor op, so faster backends plug in behind the same class, and it
takes ``grad_scale``/``found_inf`` from ``torch.amp.GradScaler``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from nol_fast.optim.base import MultiTensorOptimizer, step_counter, zeros_moment
from nol_fast.optim.multi_tensor import adabound_step


def adabound_update_(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Tensor | None,
    *,
    step: int,
    lr: float,
    base_lr: float,
    beta1: float,
    beta2: float,
    final_lr: float,
    gamma: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
) -> None:
    """Apply one AdaBound update to ``param`` and its moment buffers, in place.

    With ``g`` the gradient (plus ``weight_decay * p`` unless the decay is decoupled)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g          (v_max = max(v_max, v) for AMSBound)
        alpha = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
        f = final_lr * lr / base_lr                  (0 when base_lr is 0)
        eta = clamp(alpha / (sqrt(v) + eps), f * (1 - 1/(gamma*t + 1)), f * (1 + 1/(gamma*t)))
        p = p - eta * m

    Decoupled weight decay first scales ``p`` by ``1 - lr * weight_decay``. Complex tensors are
    updated through ``torch.view_as_real``, i.e. as pairs of real numbers.

    Parameters
    ----------
    param, grad, exp_avg, exp_avg_sq
        The parameter, its gradient and the first and second moment buffers (same shape).
    max_exp_avg_sq
        Running maximum of ``exp_avg_sq`` for AMSBound, or ``None`` for AdaBound.
    step
        Number of this update, counting from 1.
    lr, base_lr
        Current and initial learning rate of the parameter's group; their ratio scales
        ``final_lr``, so a learning-rate scheduler moves the bounds too.
    beta1, beta2, final_lr, gamma, eps, weight_decay, decoupled_weight_decay
        Hyper-parameters, as documented on :class:`AdaBound`.

    Examples
    --------
    >>> p, g = torch.zeros(3), torch.ones(3)
    >>> m, v = torch.zeros(3), torch.zeros(3)
    >>> adabound_update_(p, g, m, v, None, step=1, lr=1e-3, base_lr=1e-3, beta1=0.9,
    ...                  beta2=0.999, final_lr=0.1, gamma=1e-3, eps=1e-8, weight_decay=0.0,
    ...                  decoupled_weight_decay=False)
    >>> p
    tensor([-0.0010, -0.0010, -0.0010])
    """
    if torch.is_complex(param):
        param, grad = torch.view_as_real(param), torch.view_as_real(grad)
        exp_avg, exp_avg_sq = torch.view_as_real(exp_avg), torch.view_as_real(exp_avg_sq)
        if max_exp_avg_sq is not None:
            max_exp_avg_sq = torch.view_as_real(max_exp_avg_sq)

    if weight_decay != 0:
        if decoupled_weight_decay:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)

    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    if max_exp_avg_sq is not None:
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        denom = max_exp_avg_sq.sqrt().add_(eps)
    else:
        denom = exp_avg_sq.sqrt().add_(eps)

    step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
    scaled_final_lr = final_lr * lr / base_lr if base_lr != 0 else 0.0
    lower_bound = scaled_final_lr * (1 - 1 / (gamma * step + 1))
    upper_bound = scaled_final_lr * (1 + 1 / (gamma * step)) if gamma != 0 else math.inf

    update = torch.full_like(denom, step_size).div_(denom).clamp_(lower_bound, upper_bound)
    param.sub_(update.mul_(exp_avg))


class AdaBound(MultiTensorOptimizer):
    """AdaBound (Luo et al., ICLR 2019): Adam with dynamic bounds on the step size.

    Early on the bounds are loose and the optimizer behaves like Adam; as the step count ``t``
    grows they tighten around ``final_lr``, so it ends up behaving like SGD with that learning
    rate. See :func:`adabound_update_` for the exact update.

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
        :func:`~nol_fast.optim.multi_tensor.resolve_backend`).

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
