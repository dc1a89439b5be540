"""The reference of the multi-tensor optimizer step: Adam, AdamW and AdaBound in plain torch.

Written for clarity: it is the oracle the kernels are tested against, and the fallback for
the tensors a kernel cannot take. :func:`adam_reference` follows ``torch.optim.Adam``
(``torch._foreach_*`` ops over the lists); :func:`adabound_update_` is one tensor's AdaBound
update, operation for operation that of the ``adabound`` 0.0.5 package, and
:func:`adabound_reference` applies it tensor by tensor.

The lists hold real tensors (complex ones as their real views). Moments in a wider dtype than
their parameter (float32 for bfloat16 and float16 params) make the update run in that dtype
on a copy of the parameter, which is rounded back into it, as the device kernels do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


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
        Hyper-parameters, as documented on :class:`~nol_fast.optim.AdaBound`.

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


def _unscaled(grads: Sequence[Tensor], grad_scale: Tensor | None) -> list[Tensor]:
    """``grads / grad_scale`` (new tensors), or ``grads`` when there is no scale."""
    if grad_scale is None:
        return list(grads)
    return [g / grad_scale.to(g.device) for g in grads]


def _in_moment_precision(
    params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor]
) -> tuple[list[Tensor], list[Tensor], list[tuple[Tensor, Tensor]]]:
    """Params and grads in their moments' precision, and the (param, copy) pairs to write back.

    The optimizers keep float32 moments for bfloat16 and float16 params; the update then runs
    in float32 on a copy of the param, which is rounded back into it afterwards, as the device
    kernels do.
    """
    if all(p.dtype == m.dtype for p, m in zip(params, exp_avgs, strict=True)):
        return params, grads, []
    work = [p if p.dtype == m.dtype else p.to(m.dtype) for p, m in zip(params, exp_avgs,
                                                                          strict=True)]
    grads = [g if g.dtype == m.dtype else g.to(m.dtype) for g, m in zip(grads, exp_avgs,
                                                                          strict=True)]
    return work, grads, [(p, w) for p, w in zip(params, work, strict=True) if w is not p]


def adam_reference(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    steps: list[float],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    amsgrad: bool,
    maximize: bool,
    grad_scale: Tensor | None,
) -> None:
    """Adam (``decoupled=False``) or AdamW on lists of real tensors, with ``torch._foreach_*``.

    The update of :func:`nol_fast.ops.optim_step.op.adam_step`, which calls this for the
    ``'reference'`` backend. ``steps`` are the values of the step counters, already
    advanced; ``grads`` are divided by ``grad_scale`` when it is given.

    Examples
    --------
    >>> p, g, m, v = torch.zeros(3), torch.ones(3), torch.zeros(3), torch.zeros(3)
    >>> adam_reference([p], [g], [m], [v], [], [1.0], lr=0.1, beta1=0.9, beta2=0.999,
    ...                eps=1e-8, weight_decay=0.0, decoupled=True, amsgrad=False,
    ...                maximize=False, grad_scale=None)
    >>> p
    tensor([-0.1000, -0.1000, -0.1000])
    """
    params, grads, write_back = _in_moment_precision(params, grads, exp_avgs)
    grads = _unscaled(grads, grad_scale)
    if maximize:
        grads = torch._foreach_neg(grads)
    lr = float(lr)
    if weight_decay != 0:
        if decoupled:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        else:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    if amsgrad:
        torch._foreach_maximum_(max_exp_avg_sqs, exp_avg_sqs)
    second_moments = max_exp_avg_sqs if amsgrad else exp_avg_sqs
    # Bias corrections differ per tensor (a parameter may have skipped steps without a grad).
    for param, exp_avg, second, t in zip(params, exp_avgs, second_moments, steps, strict=True):
        bias_correction1 = 1 - beta1**t
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        denom = (second.sqrt() / bias_correction2_sqrt).add_(eps)
        param.addcdiv_(exp_avg, denom, value=-(lr / bias_correction1))
    for param, work in write_back:
        param.copy_(work)


def adabound_reference(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    steps: list[float],
    *,
    lr: float,
    amsbound: bool,
    grad_scale: Tensor | None,
    **hyper: Any,
) -> None:
    """AdaBound or AMSBound on lists of real tensors: :func:`adabound_update_` per tensor.

    Called by :func:`nol_fast.ops.optim_step.op.adabound_step` for the ``'reference'``
    backend; ``steps`` are the values of the step counters, already advanced.
    """
    decoupled = hyper.pop("decoupled")
    params, grads, write_back = _in_moment_precision(params, grads, exp_avgs)
    grads = _unscaled(grads, grad_scale)
    maxima = max_exp_avg_sqs if amsbound else [None] * len(params)
    for param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, t in zip(
        params, grads, exp_avgs, exp_avg_sqs, maxima, steps, strict=True
    ):
        adabound_update_(
            param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step=int(t), lr=float(lr),
            decoupled_weight_decay=decoupled, **hyper,
        )  # fmt: skip
    for param, work in write_back:
        param.copy_(work)
