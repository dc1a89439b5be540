"""The C++ multi-tensor step (``csrc/multi_tensor_optim.cpp`` in ``nol_fast._C``) for CPU tensors.

The kernel updates float32 or float64 tensors in one pass per element, over OpenMP threads
(as many as ``torch.get_num_threads()``), and advances their step counters itself. It takes
the tensors as a table of addresses, so :func:`multi_tensor_step` first sorts a group into
the tensors it can take (dense contiguous, one real dtype per tensor and its state, a float32
step counter on the CPU) and the rest, which the caller updates on the reference path.
"""

from __future__ import annotations

import itertools
import operator
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from nol_fast.ops.extension import EXTENSION

DTYPE_CODES = {torch.float32: 0, torch.float64: 1}
_DTYPE = operator.attrgetter("dtype")
_IS_CPU = operator.attrgetter("is_cpu")


def _checks(columns: Sequence[Sequence[Tensor]]) -> tuple[list[bool], list, list[int]]:
    """Per tensor, whether its row fits the kernel, with the params' dtypes and element counts.

    ``columns`` are the lists with the params first. A row fits when every tensor of it has
    the param's dtype (float32 or float64) and element count, a contiguous layout and lives
    on the CPU, else the kernel would read past it. The checks run list by list through
    ``map``, which costs far less per tensor than a Python loop.
    """
    dtypes = list(map(_DTYPE, columns[0]))
    numels = list(map(Tensor.numel, columns[0]))
    fits = [dtype in DTYPE_CODES for dtype in dtypes]
    for seq in columns:
        seq_dtypes, seq_numels = list(map(_DTYPE, seq)), list(map(Tensor.numel, seq))
        if seq_dtypes != dtypes or seq_numels != numels:
            fits = [f and d == d0 and n == n0 for f, d, d0, n, n0
                    in zip(fits, seq_dtypes, dtypes, seq_numels, numels, strict=True)]
        if not all(map(Tensor.is_contiguous, seq)) or not all(map(_IS_CPU, seq)):
            fits = [f and t.is_contiguous() and t.is_cpu for f, t in zip(fits, seq, strict=True)]
    return fits, dtypes, numels


def _owners(tensors: Sequence[Tensor]) -> list[Tensor]:
    """The tensors whose identity stands for ``tensors``: a real view of a complex parameter
    (``torch.view_as_real``, new every step) is represented by the parameter it views."""
    return [t if t._base is None else t._base for t in tensors]


class _GroupLayout:
    """What :func:`_tables` knows of a group's params and state between steps.

    Params, moments and step counters stay the same tensors from step to step, so their
    checks and addresses are kept; a step compares identities (of the tensors, or of the
    complex parameters their real views come from) and the params' addresses (``p.data = ...``
    keeps the tensor but moves its storage). The layout refers to the tensors weakly: it keeps
    no memory alive, and a tensor that is gone can never match again.
    """

    def __init__(self, static: list[Sequence[Tensor]], state_steps: Sequence[Tensor]) -> None:
        self.refs = [[weakref.ref(t) for t in _owners(seq)] for seq in (*static, state_steps)]
        self.addresses = [list(map(Tensor.data_ptr, seq)) for seq in (*static, state_steps)]
        fits, self.dtypes, self.numels = _checks(static)
        steps_fit = [s.dtype == torch.float32 and s.is_cpu and s.numel() == 1 for s in state_steps]
        self.fits = [a and b for a, b in zip(fits, steps_fit, strict=True)]
        self.uniform = all(self.fits) and len(set(self.dtypes)) == 1

    def matches(self, static: list[Sequence[Tensor]], state_steps: Sequence[Tensor]) -> bool:
        return (
            all(len(refs) == len(seq)
                and all(r() is t for r, t in zip(refs, _owners(seq), strict=True))
                for refs, seq in zip(self.refs, (*static, state_steps), strict=True))
            and list(map(Tensor.data_ptr, static[0])) == self.addresses[0]
        )  # fmt: skip


_LAYOUTS: dict[tuple[int, ...], _GroupLayout] = {}
_MAX_LAYOUTS = 16


def _layout(static: list[Sequence[Tensor]], state_steps: Sequence[Tensor]) -> _GroupLayout:
    """The cached layout of these tensors, or a new one (replacing the oldest when full)."""
    key = (len(static), *map(id, _owners(static[0])))
    layout = _LAYOUTS.get(key)
    if layout is None or not layout.matches(static, state_steps):
        if len(_LAYOUTS) >= _MAX_LAYOUTS:
            del _LAYOUTS[next(iter(_LAYOUTS))]
        layout = _LAYOUTS[key] = _GroupLayout(static, state_steps)
    return layout


def _tables(
    lists: Sequence[Sequence[Tensor]], state_steps: Sequence[Tensor]
) -> tuple[dict[torch.dtype, list[int]], list[int]]:
    """Address tables per dtype for the tensors the kernel takes, and the indices it leaves.

    One row per tensor: the addresses of param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (0
    without) and of the step counter, then the element count (see ``csrc``). Rows that do
    not fit the kernel (see :func:`_checks`) go to the reference path instead. Assigning
    ``.grad`` makes torch check its dtype, shape and device against the param's, so only the
    gradients' layouts are checked here.
    """
    params, grads, *moments = lists
    layout = _layout([params, *moments], state_steps)
    grads_contiguous = list(map(Tensor.is_contiguous, grads))
    p, m, v, *vmax, steps = layout.addresses
    columns = [p, list(map(Tensor.data_ptr, grads)), m, v, vmax[0] if vmax else [0] * len(p),
               steps, layout.numels]  # fmt: skip
    if layout.uniform and all(grads_contiguous):
        rows = zip(*columns, strict=True)
        return {layout.dtypes[0]: list(itertools.chain.from_iterable(rows))}, []
    tables: dict[torch.dtype, list[int]] = {}
    rest = []
    for i, row in enumerate(zip(*columns, strict=True)):
        if layout.fits[i] and grads_contiguous[i]:
            tables.setdefault(layout.dtypes[i], []).extend(row)
        else:
            rest.append(i)
    return tables, rest


def _as_cpu_float(scalar: Tensor | None) -> Tensor | None:
    """``scalar`` as a float32 CPU tensor (the kernel reads it at its address)."""
    return None if scalar is None else scalar.detach().to("cpu", torch.float32).contiguous()


def multi_tensor_step(
    lists: Sequence[Sequence[Tensor]],
    state_steps: Sequence[Tensor],
    *,
    adabound: bool,
    hyper: dict[str, Any],
) -> list[int]:
    """Step the tensors of ``lists`` the kernel can take; return the indices of the others.

    ``lists`` are the parallel ``params, grads, exp_avgs, exp_avg_sqs(, max_exp_avg_sqs)``
    (real views), ``hyper`` :func:`~nol_fast.ops.optim_step.op.adam_step`'s or
    :func:`~nol_fast.ops.optim_step.op.adabound_step`'s keyword arguments. The kernel
    advances the step counters of the tensors it takes, and leaves every tensor and counter
    as it was when ``found_inf`` is nonzero.
    """
    tables, rest = _tables(lists, state_steps)
    # Locals, so that they outlive the calls that read them.
    grad_scale = _as_cpu_float(hyper["grad_scale"])
    found_inf = _as_cpu_float(hyper["found_inf"])
    for dtype, table in tables.items():
        EXTENSION.multi_tensor_step_cpu(
            table, DTYPE_CODES[dtype],
            lr=float(hyper["lr"]), beta1=hyper["beta1"], beta2=hyper["beta2"],
            eps=hyper["eps"], weight_decay=hyper["weight_decay"],
            decoupled=hyper["decoupled"], amsgrad=hyper["amsbound" if adabound else "amsgrad"],
            maximize=hyper.get("maximize", False), adabound=adabound,
            base_lr=hyper.get("base_lr", 0.0), final_lr=hyper.get("final_lr", 0.0),
            gamma=hyper.get("gamma", 0.0),
            grad_scale=0 if grad_scale is None else grad_scale.data_ptr(),
            found_inf=0 if found_inf is None else found_inf.data_ptr(),
            num_threads=torch.get_num_threads(),
        )  # fmt: skip
    return rest
