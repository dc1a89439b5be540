"""Multi-tensor Adam/AdamW and AdaBound steps as one Triton launch each.

An optimizer step is memory-bound elementwise work over many tensors of very different sizes
(large weights next to bias vectors of a few elements). One kernel launch per tensor pays the
launch latency once per parameter; here one launch updates the whole list.

The host packs the tensors into the address, chunk and coefficient tables of
:mod:`nol_fast.ops.optim_step.tables`; program ``i`` updates chunk ``i``: it reads its row of
the tables and casts the addresses back to typed pointers (``int64 -> tl.pointer_type``).

Chunks that lie wholly inside their tensor take an unmasked path; when all addresses are
16-byte aligned the kernel is told so, and the compiler then uses 16-byte vector accesses.

``found_inf`` and ``grad_scale`` (mixed-precision loss scaling) are read inside the kernel, so
a step skipped for an overflow costs no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from nol_fast.ops import launch
from nol_fast.ops.optim_step.tables import (
    BLOCK,
    adabound_coefficients,
    adam_coefficients,
    check_groups,
    step_counts,
    tables,
)

# Memory-bound: 4096 elements over 8 warps is 16 per thread, four 16-byte accesses per fp32
# stream, which keeps enough bytes in flight; big chunks also keep the chunk table short.
# No contraction into fused multiply-adds: every operation is rounded on its own, as in the
# CUDA kernel and the reference, so the backends agree to the last bit (the step is
# memory-bound, so the extra instructions cost nothing measurable).
COMPILE_OPTIONS = {"num_warps": 8, "enable_fp_fusion": False}
_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


@triton.jit
def _to_param_dtype(x, dtype: tl.constexpr):
    """Round float32 ``x`` to ``dtype``, to nearest even."""
    if dtype == tl.bfloat16:
        # By hand, so that every backend rounds alike (the interpreter's cast truncates):
        # add just under half an ulp of bfloat16, plus the kept lowest bit for ties to even.
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        bits = tl.where(x == x, bits, 0x7FC0)  # a NaN stays a (quiet) NaN
        return bits.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(dtype)


@triton.jit
def _update_chunk(
    p_ptr, g_ptr, m_ptr, v_ptr, vmax_ptr, offs, mask, coef_ptr,
    one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay,
    grad_scale_ptr, P_DTYPE: tl.constexpr, ADABOUND: tl.constexpr, AMSGRAD: tl.constexpr,
    MAXIMIZE: tl.constexpr, DECOUPLED: tl.constexpr, HAS_GRAD_SCALE: tl.constexpr,
):
    """Load, update and store one chunk; ``mask`` is None for chunks inside their tensor."""
    # Upcast right after the load: all arithmetic in float32.
    p = tl.load(p_ptr + offs, mask=mask).to(tl.float32)
    g = tl.load(g_ptr + offs, mask=mask).to(tl.float32)
    m = tl.load(m_ptr + offs, mask=mask)
    v = tl.load(v_ptr + offs, mask=mask)
    if HAS_GRAD_SCALE:
        g = tl.div_rn(g, tl.load(grad_scale_ptr).to(tl.float32))
    if MAXIMIZE:
        g = -g
    if DECOUPLED:
        p = p * tl.load(coef_ptr + 3)
    else:
        g = g + weight_decay * p
    step_size = tl.load(coef_ptr)
    if ADABOUND:
        # exp_avg.mul_(beta1).add_(1 - beta1, grad), as the reference package
        m = m * (1.0 - one_minus_beta1) + one_minus_beta1 * g
    else:
        # exp_avg.lerp_(grad, 1 - beta1), as torch.optim.Adam
        m = m + one_minus_beta1 * (g - m)
    v = v * beta2 + one_minus_beta2 * g * g
    v_hat = v
    if AMSGRAD:
        v_hat = tl.maximum(tl.load(vmax_ptr + offs, mask=mask), v)
        tl.store(vmax_ptr + offs, v_hat, mask=mask)
    # Correctly rounded sqrt and division: on the GPU `tl.sqrt` is sqrt.approx.ftz, which
    # flushes a subnormal v to zero (an infinite step with eps=0), and `/` is approximate.
    if ADABOUND:
        # coefficients: step size with both bias corrections, lower and upper bound
        lr_t = tl.div_rn(step_size, tl.sqrt_rn(v_hat) + eps)
        lr_t = tl.minimum(tl.maximum(lr_t, tl.load(coef_ptr + 1)), tl.load(coef_ptr + 2))
        p = p - lr_t * m
    else:
        # coefficients: lr / bias_correction1, sqrt(bias_correction2)
        denom = tl.div_rn(tl.sqrt_rn(v_hat), tl.load(coef_ptr + 1)) + eps
        p = p + (-step_size) * tl.div_rn(m, denom)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    tl.store(p_ptr + offs, _to_param_dtype(p, P_DTYPE), mask=mask)


@triton.jit
def _multi_tensor_step_kernel(
    meta_ptr, chunk_ptr, coef_ptr, grad_scale_ptr, found_inf_ptr,
    one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay,
    P_DTYPE: tl.constexpr, G_DTYPE: tl.constexpr, ADABOUND: tl.constexpr,
    AMSGRAD: tl.constexpr, MAXIMIZE: tl.constexpr, DECOUPLED: tl.constexpr,
    HAS_GRAD_SCALE: tl.constexpr, HAS_FOUND_INF: tl.constexpr, ALIGN: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Update chunk ``program_id`` of one tensor (see the module docstring for the tables)."""
    # meta: (n_tensors, 6) int64; chunks: (n_chunks, 2) int64; coefs: (n_tensors, 4) float32
    chunk = tl.program_id(0)
    tid = tl.load(chunk_ptr + 2 * chunk)
    start = tl.multiple_of(tl.load(chunk_ptr + 2 * chunk + 1), BLOCK)
    row = meta_ptr + 6 * tid
    numel = tl.load(row + 5)
    # Nothing is written when found_inf is set; a program exists only for a non-empty tensor.
    run = numel > 0
    if HAS_FOUND_INF:
        run = tl.load(found_inf_ptr) == 0
    if run:
        p_ptr = tl.multiple_of(tl.load(row).to(tl.pointer_type(P_DTYPE)), ALIGN)
        g_ptr = tl.multiple_of(tl.load(row + 1).to(tl.pointer_type(G_DTYPE)), ALIGN)
        m_ptr = tl.multiple_of(tl.load(row + 2).to(tl.pointer_type(tl.float32)), ALIGN)
        v_ptr = tl.multiple_of(tl.load(row + 3).to(tl.pointer_type(tl.float32)), ALIGN)
        vmax_ptr = m_ptr
        if AMSGRAD:
            vmax_ptr = tl.multiple_of(tl.load(row + 4).to(tl.pointer_type(tl.float32)), ALIGN)
        offs = start + tl.arange(0, BLOCK)
        if start + BLOCK <= numel:
            _update_chunk(p_ptr, g_ptr, m_ptr, v_ptr, vmax_ptr, offs, None, coef_ptr + 4 * tid,
                          one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay,
                          grad_scale_ptr, P_DTYPE, ADABOUND, AMSGRAD, MAXIMIZE,
                          DECOUPLED, HAS_GRAD_SCALE)
        else:
            _update_chunk(p_ptr, g_ptr, m_ptr, v_ptr, vmax_ptr, offs, offs < numel,
                          coef_ptr + 4 * tid, one_minus_beta1, beta2, one_minus_beta2, eps,
                          weight_decay, grad_scale_ptr, P_DTYPE, ADABOUND,
                          AMSGRAD, MAXIMIZE, DECOUPLED, HAS_GRAD_SCALE)


INTERPRETED = isinstance(_multi_tensor_step_kernel, InterpretedFunction)


def _check_device(device: torch.device) -> None:
    if device.type != "cuda" and not INTERPRETED:
        raise ValueError(f"the Triton optimizer kernels need CUDA tensors, got device {device} "
                         "(CPU tensors work only with TRITON_INTERPRET=1 set before import)")


def _launch(
    groups: list[list[torch.Tensor]], coefs: torch.Tensor, grad_scale: torch.Tensor | None,
    found_inf: torch.Tensor | None, *, beta1: float, beta2: float, eps: float,
    weight_decay: float, adabound: bool, amsgrad: bool, maximize: bool,
    decoupled: bool,
) -> None:
    """Build (or reuse) the tables and run the multi-tensor kernel once over all chunks."""
    meta, chunks, n_chunks, aligned = tables(groups)
    if n_chunks == 0:
        return
    with launch.device_guard(meta.device):  # Triton launches on the current device
        _multi_tensor_step_kernel[(n_chunks,)](
            meta, chunks, coefs, coefs if grad_scale is None else grad_scale,
            coefs if found_inf is None else found_inf,
            1.0 - beta1, beta2, 1.0 - beta2, eps, weight_decay,
            P_DTYPE=_TL_DTYPES[groups[0][0].dtype], G_DTYPE=_TL_DTYPES[groups[0][1].dtype],
            ADABOUND=adabound, AMSGRAD=amsgrad, MAXIMIZE=maximize, DECOUPLED=decoupled,
            HAS_GRAD_SCALE=grad_scale is not None, HAS_FOUND_INF=found_inf is not None,
            ALIGN=16 if aligned else 1, BLOCK=BLOCK, **COMPILE_OPTIONS,
        )


def adam_step_triton(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
    exp_avgs: Sequence[torch.Tensor], exp_avg_sqs: Sequence[torch.Tensor],
    max_exp_avg_sqs: Sequence[torch.Tensor] | None, state_steps: Sequence[int | torch.Tensor],
    *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
    decoupled: bool, amsgrad: bool, maximize: bool, grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
) -> None:
    """One Adam (``decoupled=False``) or AdamW step over many tensors, in place, one launch.

    Parameters
    ----------
    params, grads : sequence of Tensor
        Contiguous tensors on one device; params float32, bfloat16 or float16 (one dtype),
        grads one such dtype. Arithmetic is float32 throughout.
    exp_avgs, exp_avg_sqs, max_exp_avg_sqs : sequence of Tensor
        float32 moments shaped like their params; ``max_exp_avg_sqs`` is read only when
        ``amsgrad`` (it may then be None or empty otherwise).
    state_steps : sequence of int or Tensor
        Per-tensor step counts, already incremented for this step.
    lr, beta1, beta2, eps, weight_decay : float
        As ``torch.optim.Adam``.
    decoupled : bool
        AdamW weight decay (``p *= 1 - lr * weight_decay``) instead of L2 on the gradient.
    amsgrad, maximize : bool
        As ``torch.optim.Adam``.
    grad_scale, found_inf : Tensor, optional
        1-element tensors: gradients are divided by ``grad_scale``; nothing is written when
        ``found_inf`` is nonzero. Both are read on the device.
    """
    if not params:
        return
    _check_device(params[0].device)
    groups = check_groups(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
                          amsgrad, grad_scale=grad_scale, found_inf=found_inf)
    coefs = adam_coefficients(step_counts(state_steps, params[0].device), lr=lr, beta1=beta1,
                              beta2=beta2, weight_decay=weight_decay)
    _launch(groups, coefs, grad_scale, found_inf, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay, adabound=False,
            amsgrad=amsgrad, maximize=maximize, decoupled=decoupled)


def adabound_step_triton(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
    exp_avgs: Sequence[torch.Tensor], exp_avg_sqs: Sequence[torch.Tensor],
    max_exp_avg_sqs: Sequence[torch.Tensor] | None, state_steps: Sequence[int | torch.Tensor],
    *, lr: float, base_lr: float, beta1: float, beta2: float, final_lr: float, gamma: float,
    eps: float, weight_decay: float, decoupled: bool, amsbound: bool,
    grad_scale: torch.Tensor | None = None, found_inf: torch.Tensor | None = None,
) -> None:
    """One AdaBound step (Luo et al., 2019) over many tensors, in place, one launch.

    Tensors and ``state_steps`` as in :func:`adam_step_triton`, with ``amsbound`` in the role
    of ``amsgrad``. The step is that of the ``adabound`` package: the learning rate
    ``lr * sqrt(1 - beta2**t) / (1 - beta1**t) / (sqrt(v) + eps)`` is clamped elementwise to
    ``[fl * (1 - 1 / (gamma * t + 1)), fl * (1 + 1 / (gamma * t))]`` with
    ``fl = final_lr * lr / base_lr``, then multiplies ``exp_avg``.

    Parameters
    ----------
    lr, base_lr, beta1, beta2, final_lr, gamma, eps, weight_decay : float
        As ``adabound.AdaBound``; ``base_lr`` (the group's initial lr) must be positive.
    decoupled : bool
        ``p *= 1 - lr * weight_decay`` before the step instead of L2 on the gradient.
    amsbound : bool
        Normalise by the running maximum of ``exp_avg_sq``.
    grad_scale, found_inf : Tensor, optional
        As in :func:`adam_step_triton`.
    """
    if not params:
        return
    _check_device(params[0].device)
    groups = check_groups(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
                          amsbound, grad_scale=grad_scale, found_inf=found_inf)
    coefs = adabound_coefficients(step_counts(state_steps, params[0].device), lr=lr,
                                  base_lr=base_lr, beta1=beta1, beta2=beta2, final_lr=final_lr,
                                  gamma=gamma, weight_decay=weight_decay)
    _launch(groups, coefs, grad_scale, found_inf, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay, adabound=True,
            amsgrad=amsbound, maximize=False, decoupled=decoupled)


__all__ = ["adabound_step_triton", "adam_step_triton"]
