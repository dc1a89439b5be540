"""The CUDA multi-tensor step (``kernels/multi_tensor_optim.cu`` in ``nol_fast._C``).

The kernel reads the tables of :mod:`nol_fast.ops.optim_step.tables`, as the Triton kernel does,
with one CUDA block per chunk, on torch's current stream. It exists when ``nol_fast._C`` was
built with CUDA (see ``setup.py``); the functions here have the signatures of
:func:`~nol_fast.ops.triton.optim.adam_step_triton` and
:func:`~nol_fast.ops.triton.optim.adabound_step_triton`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nol_fast.ops import launch
from nol_fast.ops.extension import EXTENSION
from nol_fast.ops.optim_step.tables import (
    BLOCK,
    adabound_coefficients,
    adam_coefficients,
    check_groups,
    step_counts,
    tables,
)

_DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
_ADABOUND, _AMSGRAD, _MAXIMIZE, _DECOUPLED = 1, 2, 4, 8


def _launch(
    groups: list[list[Tensor]], coefs: Tensor, grad_scale: Tensor | None,
    found_inf: Tensor | None, *, beta1: float, beta2: float, eps: float, weight_decay: float,
    flags: int,
) -> None:
    meta, chunks, n_chunks, _ = tables(groups)
    if n_chunks == 0:
        return
    device = groups[0][0].device
    # Locals, so that they outlive the launch that reads them.
    scale = None if grad_scale is None else grad_scale.to(torch.float32)
    inf = None if found_inf is None else found_inf.to(torch.float32)
    # The launch goes to the current device: make it the tensors' device.
    with launch.device_guard(device):
        EXTENSION.multi_tensor_step_cuda(
            meta.data_ptr(), chunks.data_ptr(), n_chunks, BLOCK, coefs.data_ptr(),
            0 if scale is None else scale.data_ptr(), 0 if inf is None else inf.data_ptr(),
            1.0 - beta1, beta2, 1.0 - beta2, eps, weight_decay,
            _DTYPE_CODES[groups[0][0].dtype], _DTYPE_CODES[groups[0][1].dtype], flags,
            torch.cuda.current_stream(device).cuda_stream,
        )  # fmt: skip


def adam_step_cuda(
    params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor], max_exp_avg_sqs: Sequence[Tensor] | None,
    state_steps: Sequence[int | Tensor], *, lr: float | Tensor, beta1: float, beta2: float,
    eps: float, weight_decay: float, decoupled: bool, amsgrad: bool, maximize: bool,
    grad_scale: Tensor | None = None, found_inf: Tensor | None = None,
) -> None:
    """One Adam or AdamW step over CUDA tensors, one launch (as ``adam_step_triton``)."""
    if not params:
        return
    groups = check_groups(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
                          amsgrad, grad_scale=grad_scale, found_inf=found_inf)
    coefs = adam_coefficients(step_counts(state_steps, params[0].device), lr=lr, beta1=beta1,
                              beta2=beta2, weight_decay=weight_decay)
    flags = (_AMSGRAD * amsgrad) | (_MAXIMIZE * maximize) | (_DECOUPLED * decoupled)
    _launch(groups, coefs, grad_scale, found_inf, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay, flags=flags)


def adabound_step_cuda(
    params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor], max_exp_avg_sqs: Sequence[Tensor] | None,
    state_steps: Sequence[int | Tensor], *, lr: float, base_lr: float, beta1: float,
    beta2: float, final_lr: float, gamma: float, eps: float, weight_decay: float,
    decoupled: bool, amsbound: bool, grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
) -> None:
    """One AdaBound step over CUDA tensors, one launch (as ``adabound_step_triton``)."""
    if not params:
        return
    groups = check_groups(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
                          amsbound, grad_scale=grad_scale, found_inf=found_inf)
    coefs = adabound_coefficients(step_counts(state_steps, params[0].device), lr=lr,
                                  base_lr=base_lr, beta1=beta1, beta2=beta2, final_lr=final_lr,
                                  gamma=gamma, weight_decay=weight_decay)
    flags = _ADABOUND | (_AMSGRAD * amsbound) | (_DECOUPLED * decoupled)
    _launch(groups, coefs, grad_scale, found_inf, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay, flags=flags)
