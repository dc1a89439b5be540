"""Multi-tensor optimizer steps: one call updates a whole list of parameters, with backends.

:func:`adam_step` (Adam and AdamW) and :func:`adabound_step` (AdaBound and AMSBound) take the
parameters, gradients, moment buffers and step counters of one parameter group as parallel
lists, so a backend can update all of them in a few fused launches instead of a handful of
kernels per tensor. The optimizer classes (:class:`~nol_fast.optim.FusedAdam`,
:class:`~nol_fast.optim.AdaBound`) only gather the lists and call these functions.

Backends
--------
``'reference'``
    ``torch._foreach_*`` ops and plain per-tensor loops, written for clarity and checked against
    ``torch.optim`` and the ``adabound`` package; any device. It reads each step counter (and a
    tensor ``lr``) as a Python number, which synchronises with the host for CUDA tensors, and
    keeps a copy of the updated tensors while ``found_inf`` is given.
``'cpu'``
    The C++ kernel of ``nol_fast._C`` (``csrc/multi_tensor_optim.cpp``): one pass per element
    over OpenMP threads, for dense float32/float64 CPU tensors; the tensors of a group it
    cannot take (other dtypes, non-contiguous layouts) go through the reference path.
``'triton'``
    One launch of the Triton kernel of :mod:`nol_fast.ops.triton.optim` for CUDA tensors, used
    when that module can be imported (it needs the ``triton`` package).
``'cuda'``
    The CUDA kernel of ``nol_fast._C`` (``kernels/multi_tensor_optim.cu``), one launch on the
    same tables as the Triton kernel; present when the extension was built with CUDA.

Selection order: the ``backend`` argument, then the ``NOL_FAST_BACKEND`` environment variable
when it names a backend of this op that can run on the tensors' device, then automatic:
``'cpu'`` for CPU tensors, ``'triton'`` and then ``'cuda'`` for CUDA tensors, each when
available, and ``'reference'`` otherwise.

Mixed precision
---------------
``grad_scale`` and ``found_inf`` are the tensors ``torch.amp.GradScaler`` hands to optimizers
that unscale inside their step: gradients are divided by ``grad_scale`` (the ``.grad`` tensors
are left untouched), and when ``found_inf`` is nonzero the parameters, buffers and step counters
keep their old values. The skip is a ``torch.where`` on the device, not a host-side branch.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from nol_fast.ops import extension
from nol_fast.ops.optim_step import cpu as cpu_step

BACKENDS = ("reference", "cpu", "triton", "cuda")
ENV_VAR = "NOL_FAST_BACKEND"
# Automatic choice per device type, best first.
_PREFERENCE = {"cpu": ("cpu", "reference"), "cuda": ("triton", "cuda", "reference")}


@functools.cache
def _triton_module() -> ModuleType | None:
    """:mod:`nol_fast.ops.triton.optim`, or ``None`` when it cannot be imported here."""
    try:
        return importlib.import_module("nol_fast.ops.triton.optim")
    except ImportError:
        return None


def backend_status(backend: str, device: torch.device) -> str | None:
    """``None`` if ``backend`` runs on tensors of ``device``, else the reason it does not."""
    if backend == "reference":
        return None
    if device.type != ("cpu" if backend == "cpu" else "cuda"):
        return f"runs on {'CPU' if backend == 'cpu' else 'CUDA'} tensors only"
    if backend == "triton" and _triton_module() is None:
        return "nol_fast.ops.triton.optim cannot be imported (is triton installed?)"
    if backend in ("cpu", "cuda"):
        return extension.missing(cuda=backend == "cuda")
    return None


def check_backend_name(backend: str | None) -> None:
    """Raise ``ValueError`` unless ``backend`` is ``None`` or a backend of this op.

    Examples
    --------
    >>> check_backend_name("reference")
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(
            f"unknown optimizer backend {backend!r}; choose one of: {', '.join(BACKENDS)}"
        )


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """The backend that updates tensors on ``device``.

    Parameters
    ----------
    backend
        ``'reference'``, ``'cpu'``, ``'triton'``, ``'cuda'``, or ``None`` for
        ``$NOL_FAST_BACKEND`` and then automatic selection.
    device
        Device of the parameters.

    Raises
    ------
    ValueError
        For a backend name this op does not have.
    RuntimeError
        When the requested backend cannot run on ``device``.

    Examples
    --------
    >>> resolve_backend("reference", torch.device("cpu"))
    'reference'
    >>> resolve_backend(None, torch.device("meta"))  # no backend but the reference runs there
    'reference'
    """
    check_backend_name(backend)
    if backend is not None:
        reason = backend_status(backend, device)
        if reason is not None:
            raise RuntimeError(
                f"optimizer backend {backend!r} cannot update {device.type} tensors ({reason})"
            )
        return backend
    preferred = os.environ.get(ENV_VAR)
    if preferred in BACKENDS and backend_status(preferred, device) is None:
        return preferred
    for candidate in _PREFERENCE.get(device.type, ()):
        if backend_status(candidate, device) is None:
            return candidate
    return "reference"


def _real_views(lists: Sequence[Sequence[Tensor]]) -> tuple[list[Tensor], ...]:
    """The lists with complex tensors as their real views (pairs of reals).

    Which tensors are complex is read off the params: a gradient has its param's dtype, and
    so has the optimizer state created for it.
    """
    complex_mask = list(map(torch.is_complex, lists[0]))
    if not any(complex_mask):
        return tuple(list(seq) for seq in lists)
    return tuple(
        [torch.view_as_real(t) if c else t for t, c in zip(seq, complex_mask, strict=True)]
        if seq else []
        for seq in lists
    )


def _unscaled(grads: Sequence[Tensor], grad_scale: Tensor | None) -> list[Tensor]:
    """``grads / grad_scale`` (new tensors), or ``grads`` when there is no scale."""
    if grad_scale is None:
        return list(grads)
    return [g / grad_scale.to(g.device) for g in grads]


def _count(state_steps: Sequence[Tensor], found_inf: Tensor | None, by: int) -> None:
    """Advance the counters by ``by``, or take back (``by=-1``) a step skipped for ``found_inf``."""
    if by > 0:
        torch._foreach_add_(list(state_steps), by)
    elif found_inf is not None:
        for step in state_steps:
            step.sub_(found_inf.to(step.device, step.dtype))


def _device_kernel(name: str, backend: str) -> Callable:
    """The one-launch kernel ``name`` (``'adam'`` or ``'adabound'``) of a device backend."""
    if backend == "triton":
        return getattr(_triton_module(), f"{name}_step_triton")
    from nol_fast.ops.optim_step import cuda

    return getattr(cuda, f"{name}_step_cuda")


def _dispatch(
    name: str,
    backend: str | None,
    lists: tuple[list[Tensor], ...],
    state_steps: Sequence[Tensor],
    hyper: dict[str, Any],
    reference: Callable[..., None],
) -> None:
    """Update all tensors of ``lists`` (real views) with the chosen backend of op ``name``.

    Every backend advances the step counters before the update reads them, and leaves
    tensors and counters as they were where ``found_inf`` is nonzero: the kernels skip such a
    step on their own (the counters advanced here are taken back), while tensors left to the
    reference path are restored from copies.
    """
    found_inf = hyper["found_inf"]
    chosen = resolve_backend(backend, lists[0][0].device)
    rest: Sequence[int] = range(len(state_steps))
    if chosen in ("triton", "cuda"):
        _count(state_steps, found_inf, 1)
        _device_kernel(name, chosen)(*lists, state_steps, **hyper)
        _count(state_steps, found_inf, -1)
        return
    if chosen == "cpu":
        rest = cpu_step.multi_tensor_step(lists if lists[4] else lists[:4], state_steps,
                                          adabound=name == "adabound", hyper=hyper)
    if not rest:
        return
    sub = tuple([seq[i] for i in rest] if seq else [] for seq in lists)
    steps = [state_steps[i] for i in rest]
    saved = [] if found_inf is None else [(t, t.clone()) for seq in sub[:1] + sub[2:]
                                          for t in seq]
    _count(steps, found_inf, 1)
    reference(*sub, steps, **{k: v for k, v in hyper.items() if k != "found_inf"})
    for tensor, before in saved:
        tensor.copy_(torch.where(found_inf.to(tensor.device) != 0, before, tensor))
    _count(steps, found_inf, -1)


def adam_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    max_exp_avg_sqs: Sequence[Tensor],
    state_steps: Sequence[Tensor],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    amsgrad: bool,
    maximize: bool,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    backend: str | None = None,
) -> None:
    """One Adam (``decoupled=False``) or AdamW (``decoupled=True``) step on lists of tensors.

    The update is ``torch.optim.Adam``'s: with ``t`` the step counter after increment,
    ``m = lerp(m, g, 1 - beta1)``, ``v = beta2 v + (1 - beta2) g^2`` (``v_max = max(v_max, v)``
    with ``amsgrad``), ``p -= lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)``.
    Weight decay adds ``weight_decay * p`` to ``g``, or with ``decoupled`` scales ``p`` by
    ``1 - lr * weight_decay`` first. Complex tensors are updated as pairs of reals.

    Parameters
    ----------
    params, grads, exp_avgs, exp_avg_sqs
        Parallel lists, updated in place (``grads`` only read).
    max_exp_avg_sqs
        Running maxima of ``exp_avg_sqs`` when ``amsgrad``, else empty.
    state_steps
        One-element float tensors counting each parameter's steps; incremented in place (here,
        for every backend) before the update reads them.
    lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad, maximize
        Hyper-parameters, as for ``torch.optim.Adam``.
    grad_scale, found_inf
        Optional tensors from ``torch.amp.GradScaler`` (see the module docstring).
    backend
        A backend name or ``None`` (see :func:`resolve_backend`).

    Examples
    --------
    >>> p, g = torch.zeros(3), torch.ones(3)
    >>> m, v, t = torch.zeros(3), torch.zeros(3), torch.tensor(0.0)
    >>> adam_step([p], [g], [m], [v], [], [t], lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
    ...           weight_decay=0.0, decoupled=True, amsgrad=False, maximize=False)
    >>> p
    tensor([-0.1000, -0.1000, -0.1000])
    """
    if not params:
        return
    hyper: dict[str, Any] = dict(
        lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, decoupled=decoupled,
        amsgrad=amsgrad, maximize=maximize, grad_scale=grad_scale, found_inf=found_inf,
    )  # fmt: skip
    lists = _real_views((params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs))
    _dispatch("adam", backend, lists, state_steps, hyper, _adam_reference)


def adabound_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    max_exp_avg_sqs: Sequence[Tensor],
    state_steps: Sequence[Tensor],
    *,
    lr: float,
    base_lr: float,
    beta1: float,
    beta2: float,
    final_lr: float,
    gamma: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    amsbound: bool,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    backend: str | None = None,
) -> None:
    """One AdaBound (or AMSBound, ``amsbound=True``) step on lists of tensors.

    The update of each tensor is :func:`~nol_fast.optim.adabound.adabound_update_`'s; the lists
    and the mixed-precision arguments are as for :func:`adam_step`, ``decoupled`` is
    :class:`~nol_fast.optim.AdaBound`'s ``decoupled_weight_decay``.

    Examples
    --------
    >>> p, g = torch.zeros(3), torch.ones(3)
    >>> m, v, t = torch.zeros(3), torch.zeros(3), torch.tensor(0.0)
    >>> adabound_step([p], [g], [m], [v], [], [t], lr=1e-3, base_lr=1e-3, beta1=0.9,
    ...               beta2=0.999, final_lr=0.1, gamma=1e-3, eps=1e-8, weight_decay=0.0,
    ...               decoupled=False, amsbound=False)
    >>> p
    tensor([-0.0010, -0.0010, -0.0010])
    """
    if not params:
        return
    hyper: dict[str, Any] = dict(
        lr=lr, base_lr=base_lr, beta1=beta1, beta2=beta2, final_lr=final_lr, gamma=gamma,
        eps=eps, weight_decay=weight_decay, decoupled=decoupled, amsbound=amsbound,
        grad_scale=grad_scale, found_inf=found_inf,
    )  # fmt: skip
    lists = _real_views((params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs))
    _dispatch("adabound", backend, lists, state_steps, hyper, _adabound_reference)


def _adam_reference(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: Sequence[Tensor],
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
    """The reference backend of :func:`adam_step` on real views, counters already advanced."""
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
    for param, exp_avg, second, step in zip(
        params, exp_avgs, second_moments, state_steps, strict=True
    ):
        t = step.item()
        bias_correction1 = 1 - beta1**t
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        denom = (second.sqrt() / bias_correction2_sqrt).add_(eps)
        param.addcdiv_(exp_avg, denom, value=-(lr / bias_correction1))


def _adabound_reference(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: Sequence[Tensor],
    *,
    lr: float,
    amsbound: bool,
    grad_scale: Tensor | None,
    **hyper: Any,
) -> None:
    """The reference backend of :func:`adabound_step`: the update tensor by tensor."""
    # Imported here: nol_fast.optim.adabound imports this module for AdaBound.step.
    from nol_fast.optim.adabound import adabound_update_

    decoupled = hyper.pop("decoupled")
    grads = _unscaled(grads, grad_scale)
    maxima = max_exp_avg_sqs if amsbound else [None] * len(params)
    for param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step in zip(
        params, grads, exp_avgs, exp_avg_sqs, maxima, state_steps, strict=True
    ):
        adabound_update_(
            param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step=int(step.item()),
            lr=float(lr), decoupled_weight_decay=decoupled, **hyper,
        )  # fmt: skip
