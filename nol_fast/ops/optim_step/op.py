"""The multi-tensor optimizer step op: one call updates a whole list of parameters.

:func:`adam_step` (Adam and AdamW) and :func:`adabound_step` (AdaBound and AMSBound) take the
parameters, gradients, moment buffers and step counters of one parameter group as parallel
lists, so a backend can update all of them in a few fused launches instead of a handful of
kernels per tensor. The optimizer classes (:class:`~nol_fast.optim.FusedAdam`,
:class:`~nol_fast.optim.AdaBound`) only gather the lists and call these functions.

Backends
--------
``'reference'``
    :mod:`~nol_fast.ops.optim_step.reference`: ``torch._foreach_*`` ops and plain per-tensor
    loops, written for clarity and checked against ``torch.optim`` and the ``adabound``
    package; any device. It reads the step counters (in one transfer) and a tensor ``lr`` as
    Python numbers, which synchronises with the host for CUDA tensors, and keeps a copy of the
    updated tensors while ``found_inf`` is given.
``'cpu'``
    :mod:`~nol_fast.ops.optim_step.cpu`, the C++ kernel of ``nol_fast._C``
    (``csrc/multi_tensor_optim.cpp``): one pass per element over OpenMP threads, for dense
    float32/float64 CPU tensors.
``'triton'``
    One launch per device and dtype pair of the Triton kernel of
    :mod:`nol_fast.ops.triton.optim`, for CUDA tensors (CPU tensors under the Triton
    interpreter, see :func:`nol_fast.ops.launch.triton_status`); needs ``triton``.
``'cuda'``
    :mod:`~nol_fast.ops.optim_step.cuda`, the CUDA kernel of ``nol_fast._C``
    (``kernels/multi_tensor_optim.cu``), one launch on the same tables
    (:mod:`~nol_fast.ops.optim_step.tables`) as the Triton kernel; present when the extension
    was built with CUDA.

The tensors of a group that the chosen kernel cannot take go through the reference path in
the same step: for ``'cpu'`` other dtypes and non-contiguous layouts, for ``'triton'`` and
``'cuda'`` float64, moments that are not float32 and layouts that are not dense
(:func:`nol_fast.ops.optim_step.tables.launch_groups`).

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

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from nol_fast.ops import extension
from nol_fast.ops.launch import triton_status
from nol_fast.ops.optim_step import cpu as cpu_step
from nol_fast.ops.optim_step.reference import adabound_reference, adam_reference
from nol_fast.ops.optim_step.tables import launch_groups

BACKENDS = ("reference", "cpu", "triton", "cuda")
ENV_VAR = "NOL_FAST_BACKEND"
# Automatic choice per device type, best first.
_PREFERENCE = {"cpu": ("cpu", "reference"), "cuda": ("triton", "cuda", "reference")}


def backend_status(backend: str, device: torch.device) -> str | None:
    """``None`` if ``backend`` runs on tensors of ``device``, else the reason it does not."""
    if backend == "reference":
        return None
    if backend == "triton":
        return triton_status(device.type)
    if device.type != ("cpu" if backend == "cpu" else "cuda"):
        return f"runs on {'CPU' if backend == 'cpu' else 'CUDA'} tensors only"
    return extension.missing(cuda=backend == "cuda")


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
        One of :data:`BACKENDS`, or ``None`` for ``$NOL_FAST_BACKEND`` and then automatic
        selection.
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


def _check_amp_scalars(grad_scale: Tensor | None, found_inf: Tensor | None) -> None:
    """Raise ``ValueError`` unless ``grad_scale`` and ``found_inf`` are None or one-element
    tensors: checked before a step changes anything."""
    for name, value in (("grad_scale", grad_scale), ("found_inf", found_inf)):
        if value is not None and (not isinstance(value, Tensor) or value.numel() != 1):
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a one-element tensor or None, got {shape}")


def _advance(state_steps: Sequence[Tensor]) -> None:
    """Add one to every step counter (one op for the whole list)."""
    if state_steps:
        torch._foreach_add_(list(state_steps), 1)


def _take_back(state_steps: Sequence[Tensor], found_inf: Tensor | None) -> None:
    """Subtract ``found_inf`` (0 or 1) from the counters: a skipped step does not count.

    On the device of the counters, one op per device and no value read on the host.
    """
    if found_inf is None or not state_steps:
        return
    by_device: dict[torch.device, list[Tensor]] = {}
    for step in state_steps:
        by_device.setdefault(step.device, []).append(step)
    for device, steps in by_device.items():
        torch._foreach_add_(steps, found_inf.to(device, torch.float32).reshape(()), alpha=-1)


def _host_values(state_steps: Sequence[Tensor]) -> list[float]:
    """The counters as Python numbers, read in one transfer when they share a device."""
    if len({s.device for s in state_steps}) == 1:
        return torch.stack([s.reshape(()) for s in state_steps]).tolist()
    return [s.item() for s in state_steps]


def _rows(lists: tuple[list[Tensor], ...], rows: Sequence[int]) -> tuple[list[Tensor], ...]:
    """The lists restricted to ``rows`` (the lists themselves when that is all of them)."""
    if len(rows) == len(lists[0]):
        return lists
    return tuple([seq[i] for i in rows] if seq else [] for seq in lists)


def _device_kernel(name: str, backend: str) -> Callable:
    """The one-launch kernel ``name`` (``'adam'`` or ``'adabound'``) of a device backend."""
    if backend == "triton":
        from nol_fast.ops.triton import optim

        return getattr(optim, f"{name}_step_triton")
    from nol_fast.ops.optim_step import cuda

    return getattr(cuda, f"{name}_step_cuda")


def _device_launches(
    backend: str, lists: tuple[list[Tensor], ...]
) -> tuple[list[tuple[torch.device, list[int]]], list[int]]:
    """The rows a device kernel updates, per launch and its device, and the other rows.

    A launch takes the rows of one device and one (param, grad) dtype pair that the kernel
    accepts (see :func:`nol_fast.ops.optim_step.tables.launch_groups`) on a device where
    ``backend`` runs; every other row (float64, moments in another precision, a strided
    layout) is left to the reference path, as the ``cpu`` backend does.
    """
    groups, rest = launch_groups(lists, use_max=bool(lists[4]))
    launches = []
    for (device, _, _), rows in groups.items():
        if backend_status(backend, device) is None:
            launches.append((device, rows))
        else:
            rest.extend(rows)
    return launches, sorted(rest)


def _device_step(
    name: str,
    backend: str,
    lists: tuple[list[Tensor], ...],
    state_steps: Sequence[Tensor],
    hyper: dict[str, Any],
) -> list[int]:
    """Update the rows a device kernel takes, one launch per device and dtype pair; return
    the indices of the other rows.

    The counters of the launched rows are advanced before the launches (the coefficients
    read them) and taken back where ``found_inf`` is set, all on the device.
    """
    launches, rest = _device_launches(backend, lists)
    kernel = _device_kernel(name, backend)
    launched = [state_steps[i] for _, rows in launches for i in rows]
    _advance(launched)
    try:
        for device, rows in launches:
            amp = {k: hyper[k].to(device) for k in ("grad_scale", "found_inf")
                   if hyper[k] is not None}
            kernel(*_rows(lists, rows), [state_steps[i] for i in rows], **{**hyper, **amp})
    except BaseException:
        if launched:
            torch._foreach_sub_(launched, 1)
        raise
    _take_back(launched, hyper["found_inf"])
    return rest


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
    reference path are restored from copies. Arguments are checked and the rows sorted
    between kernel and reference before anything changes, so a step that raises leaves the
    counters as they were.
    """
    found_inf = hyper["found_inf"]
    _check_amp_scalars(hyper["grad_scale"], found_inf)
    chosen = resolve_backend(backend, lists[0][0].device)
    rest: Sequence[int] = range(len(state_steps))
    if chosen in ("triton", "cuda"):
        rest = _device_step(name, chosen, lists, state_steps, hyper)
    elif chosen == "cpu":
        rest = cpu_step.multi_tensor_step(lists if lists[4] else lists[:4], state_steps,
                                          adabound=name == "adabound", hyper=hyper)
    if not rest:
        return
    sub = _rows(lists, rest)
    steps = [state_steps[i] for i in rest]
    saved = [] if found_inf is None else [(t, t.clone()) for seq in sub[:1] + sub[2:]
                                          for t in seq]
    _advance(steps)
    reference(*sub, _host_values(steps), **{k: v for k, v in hyper.items() if k != "found_inf"})
    for tensor, before in saved:
        tensor.copy_(torch.where(found_inf.to(tensor.device) != 0, before, tensor))
    _take_back(steps, found_inf)


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
        One of :data:`BACKENDS` or ``None`` (see :func:`resolve_backend`).

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
    _dispatch("adam", backend, lists, state_steps, hyper, adam_reference)


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

    The update of each tensor is
    :func:`~nol_fast.ops.optim_step.reference.adabound_update_`'s; the lists
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
    _dispatch("adabound", backend, lists, state_steps, hyper, adabound_reference)
