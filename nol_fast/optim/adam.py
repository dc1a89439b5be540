"""FusedAdam and FusedAdamW: ``torch.optim``-compatible Adam that steps a whole group at once.

Each step hands the tensors of a parameter group to the multi-tensor op
:func:`nol_fast.ops.optim_step.op.adam_step` as lists, so the backend chosen there (a C++
kernel on the CPU, one Triton or CUDA launch on the GPU, ``torch._foreach_*`` ops for the
reference) updates all parameters together. The state layout (``step``, ``exp_avg``, ``exp_avg_sq``,
``max_exp_avg_sq``) is ``torch.optim.Adam``'s, and ``torch.amp.GradScaler`` passes its scale and
inf flag to the step instead of unscaling the gradients in a separate pass. The moments of
bfloat16 and float16 parameters are float32.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from nol_fast.ops.optim_step.op import adam_step
from nol_fast.optim.base import MultiTensorOptimizer, step_counter, zeros_moment


class FusedAdam(MultiTensorOptimizer):
    """Adam (or AdamW with ``decoupled_weight_decay=True``) over multi-tensor steps.

    The update is ``torch.optim.Adam``'s (see :func:`~nol_fast.ops.optim_step.op.adam_step`).
    Complex parameters are updated as pairs of reals, as ``torch.optim.Adam`` does.

    Parameters
    ----------
    params
        Parameters or parameter-group dicts, as for any ``torch.optim`` optimizer.
    lr
        Learning rate (``>= 0``); a tensor only with ``capturable=True``.
    betas
        Decay rates of the first and second moment averages, each in ``[0, 1)``.
    eps
        Added to the denominator for numerical stability (``>= 0``).
    weight_decay
        Weight-decay factor (``>= 0``).
    amsgrad
        Normalise by the running maximum of the second moment.
    maximize
        Maximise the objective instead of minimising it.
    capturable
        Allow ``lr`` to be a one-element tensor, kept on the parameters' device, so a step
        needs no host values (the basis for CUDA-graph capture). Step counters are float32
        tensors on the parameters' device either way, as in ``torch.optim.Adam(fused=True)``.
    backend
        Backend of the multi-tensor op, or ``None`` for automatic selection (see
        :func:`~nol_fast.ops.optim_step.op.resolve_backend`).
    decoupled_weight_decay
        Decay weights as ``p *= 1 - lr * weight_decay`` (AdamW).

    Examples
    --------
    >>> model = torch.nn.Linear(4, 2)
    >>> optimizer = FusedAdam(model.parameters(), lr=1e-3)
    >>> model(torch.randn(8, 4)).square().mean().backward()
    >>> optimizer.step()
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
        capturable: bool = False,
        backend: str | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "capturable": capturable,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults, backend)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group after checking its hyper-parameters."""
        _check_hyperparameters(type(self).__name__, {**self.defaults, **param_group})
        super().add_param_group(param_group)

    def _group_step(
        self,
        group: dict[str, Any],
        lists: tuple[list[Tensor], ...],
        grad_scale: Tensor | None,
        found_inf: Tensor | None,
    ) -> None:
        lr = group["lr"]
        if torch.is_tensor(lr) and group["capturable"] and lr.device != lists[0][0].device:
            lr = group["lr"] = lr.to(lists[0][0].device)
        beta1, beta2 = group["betas"]
        adam_step(
            *lists,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            decoupled=group["decoupled_weight_decay"],
            amsgrad=group["amsgrad"],
            maximize=group["maximize"],
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
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = zeros_moment(param)
        state["step"] = step_counter(state["step"], param)
        maximum = state["max_exp_avg_sq"] if group["amsgrad"] else None
        return [state["exp_avg"], state["exp_avg_sq"], maximum, state["step"]]


class FusedAdamW(FusedAdam):
    """AdamW: :class:`FusedAdam` with decoupled weight decay (default ``weight_decay=1e-2``).

    Parameters are those of :class:`FusedAdam`, without ``decoupled_weight_decay``.

    Examples
    --------
    >>> model = torch.nn.Linear(4, 2)
    >>> optimizer = FusedAdamW(model.parameters(), lr=1e-3)
    >>> group = optimizer.param_groups[0]
    >>> group["weight_decay"], group["decoupled_weight_decay"]
    (0.01, True)
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
        capturable: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            maximize=maximize, capturable=capturable, backend=backend,
            decoupled_weight_decay=True,
        )  # fmt: skip


def _check_hyperparameters(owner: str, group: dict[str, Any]) -> None:
    """Raise ValueError naming the first hyper-parameter of ``group`` out of its range."""
    lr = group["lr"]
    if torch.is_tensor(lr):
        if not group["capturable"]:
            raise ValueError(f"{owner}: lr may be a tensor only with capturable=True, got {lr!r}")
        if lr.numel() != 1:
            raise ValueError(f"{owner}: a tensor lr must have one element, got shape {lr.shape}")
    for name in ("lr", "eps", "weight_decay"):
        if not group[name] >= 0:
            raise ValueError(f"{owner}: {name} must be >= 0, got {group[name]!r}")
    betas = group["betas"]
    if len(betas) != 2:
        raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
    for index, beta in enumerate(betas):
        if not 0 <= beta < 1:
            raise ValueError(f"{owner}: betas[{index}] must be in [0, 1), got {beta!r}")
