"""Multi-tensor Adam/AdamW and AdaBound steps as one Triton launch each.

An optimizer step is memory-bound elementwise work over many tensors of very different sizes
(large weights next to bias vectors of a few elements). One kernel launch per tensor pays the
launch latency once per parameter; here one launch updates the whole list.

Tables
------
The host packs, per tensor, the addresses of ``param, grad, exp_avg, exp_avg_sq`` and
``max_exp_avg_sq`` (0 when unused) and the element count into an int64 table, and splits every
tensor into ``_BLOCK``-sized chunks listed in a chunk table of ``(tensor id, chunk start)``
pairs; that table is packed after the first one, and the pair goes to the device in one copy,
cached by addresses and sizes (the optimizer state does not move between steps). Program ``i``
updates chunk ``i``: it reads its row of the tables and casts the addresses back to typed
pointers (``int64 -> tl.pointer_type``). The per-tensor step counts enter through a small
float32 table of host-folded coefficients (bias corrections, AdaBound's bounds).

Chunks that lie wholly inside their tensor take an unmasked path; when all addresses are
16-byte aligned the kernel is told so, and the compiler then uses 16-byte vector accesses.

``found_inf`` and ``grad_scale`` (mixed-precision loss scaling) are read inside the kernel, so
a step skipped for an overflow costs no host synchronisation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

# Memory-bound: 4096 elements over 8 warps is 16 per thread, four 16-byte accesses per fp32
# stream, which keeps enough bytes in flight; big chunks also keep the chunk table short.
_BLOCK = 4096
_NUM_WARPS = 8
_PARAM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
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
    one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay_factor,
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
        g = g / tl.load(grad_scale_ptr).to(tl.float32)
    if MAXIMIZE:
        g = -g
    if DECOUPLED:
        p = p * decay_factor
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
    if ADABOUND:
        # coefficients: step size with both bias corrections, lower and upper bound
        lr_t = step_size / (tl.sqrt(v_hat) + eps)
        lr_t = tl.minimum(tl.maximum(lr_t, tl.load(coef_ptr + 1)), tl.load(coef_ptr + 2))
        p = p - lr_t * m
    else:
        # coefficients: lr / bias_correction1, sqrt(bias_correction2)
        p = p + (-step_size) * (m / (tl.sqrt(v_hat) / tl.load(coef_ptr + 1) + eps))
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    tl.store(p_ptr + offs, _to_param_dtype(p, P_DTYPE), mask=mask)


@triton.jit
def _multi_tensor_step_kernel(
    meta_ptr, chunk_ptr, coef_ptr, grad_scale_ptr, found_inf_ptr,
    one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay_factor,
    P_DTYPE: tl.constexpr, G_DTYPE: tl.constexpr, ADABOUND: tl.constexpr,
    AMSGRAD: tl.constexpr, MAXIMIZE: tl.constexpr, DECOUPLED: tl.constexpr,
    HAS_GRAD_SCALE: tl.constexpr, HAS_FOUND_INF: tl.constexpr, ALIGN: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Update chunk ``program_id`` of one tensor (see the module docstring for the tables)."""
    # meta: (n_tensors, 6) int64; chunks: (n_chunks, 2) int64; coefs: (n_tensors, 3) float32
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
            _update_chunk(p_ptr, g_ptr, m_ptr, v_ptr, vmax_ptr, offs, None, coef_ptr + 3 * tid,
                          one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay,
                          decay_factor, grad_scale_ptr, P_DTYPE, ADABOUND, AMSGRAD, MAXIMIZE,
                          DECOUPLED, HAS_GRAD_SCALE)
        else:
            _update_chunk(p_ptr, g_ptr, m_ptr, v_ptr, vmax_ptr, offs, offs < numel,
                          coef_ptr + 3 * tid, one_minus_beta1, beta2, one_minus_beta2, eps,
                          weight_decay, decay_factor, grad_scale_ptr, P_DTYPE, ADABOUND,
                          AMSGRAD, MAXIMIZE, DECOUPLED, HAS_GRAD_SCALE)


_INTERPRETED = isinstance(_multi_tensor_step_kernel, InterpretedFunction)


@functools.lru_cache(maxsize=32)
def _tables(
    addresses: tuple[tuple[int, ...], ...], numels: tuple[int, ...], device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Tensor and chunk tables on ``device``, and the number of chunks (see module docstring)."""
    meta = torch.tensor([(*a, n) for a, n in zip(addresses, numels, strict=True)],
                        dtype=torch.int64).reshape(-1)
    chunks = torch.tensor([(t, s) for t, n in enumerate(numels) for s in range(0, n, _BLOCK)],
                          dtype=torch.int64).reshape(-1)
    packed = torch.cat([meta, chunks]).to(device)
    return packed[:meta.numel()], packed[meta.numel():], chunks.numel() // 2


def _check(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
    exp_avgs: Sequence[torch.Tensor], exp_avg_sqs: Sequence[torch.Tensor],
    max_exp_avg_sqs: Sequence[torch.Tensor] | None, state_steps: Sequence[object],
    use_max: bool, **scalars: torch.Tensor | None,
) -> list[list[torch.Tensor]]:
    """Validate the lists; return the per-tensor groups ``[p, g, m, v(, vmax)]``."""
    lists = {"grads": grads, "exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs,
             "state_steps": state_steps}
    if use_max:
        lists["max_exp_avg_sqs"] = max_exp_avg_sqs if max_exp_avg_sqs is not None else []
    for name, seq in lists.items():
        if len(seq) != len(params):
            raise ValueError(f"{name} has {len(seq)} entries, params has {len(params)}")
    groups = [list(t) for t in zip(params, grads, exp_avgs, exp_avg_sqs, strict=False)]
    if use_max:
        for group, vmax in zip(groups, lists["max_exp_avg_sqs"], strict=True):
            group.append(vmax)
    names = ("param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    device = params[0].device
    if device.type != "cuda" and not _INTERPRETED:
        raise ValueError(f"the Triton optimizer kernels need CUDA tensors, got device {device} "
                         "(CPU tensors work only with TRITON_INTERPRET=1 set before import)")
    for i, group in enumerate(groups):
        for name, t in zip(names, group, strict=False):
            if not isinstance(t, torch.Tensor) or t.is_sparse or not t.is_contiguous():
                raise TypeError(f"{name} {i} must be a dense contiguous tensor")
            if t.device != device:
                raise ValueError(f"{name} {i} is on {t.device}, params[0] on {device}")
            if t.shape != group[0].shape:
                raise ValueError(f"{name} {i} has shape {tuple(t.shape)}, its param "
                                 f"{tuple(group[0].shape)}")
            want = (params[0].dtype if name == "param" else grads[0].dtype if name == "grad"
                    else torch.float32)
            if t.dtype != want or t.dtype not in _PARAM_DTYPES:
                raise TypeError(f"{name} {i} is {t.dtype}; params (float32, bfloat16 or "
                                "float16) and grads must each share one dtype, moments float32")
    for name, t in scalars.items():
        if t is not None and (t.numel() != 1 or t.device != device):
            raise ValueError(f"{name} must be a 1-element tensor on {device}")
    return groups


def _steps(state_steps: Sequence[object], device: torch.device) -> torch.Tensor:
    """The step counts as a float64 tensor on ``device`` (no host sync for device tensors)."""
    if all(isinstance(s, torch.Tensor) for s in state_steps):
        return torch.stack([s.reshape(()).to(device, torch.float64) for s in state_steps])
    return torch.tensor([float(s) for s in state_steps], dtype=torch.float64, device=device)


def _launch(
    groups: list[list[torch.Tensor]], coefs: torch.Tensor, grad_scale: torch.Tensor | None,
    found_inf: torch.Tensor | None, *, beta1: float, beta2: float, eps: float,
    weight_decay: float, decay_factor: float, adabound: bool, amsgrad: bool, maximize: bool,
    decoupled: bool,
) -> None:
    """Build (or reuse) the tables and run the multi-tensor kernel once over all chunks."""
    addresses = tuple(tuple(t.data_ptr() for t in g) + (0,) * (5 - len(g)) for g in groups)
    device = groups[0][0].device
    meta, chunks, n_chunks = _tables(addresses, tuple(g[0].numel() for g in groups), device)
    if n_chunks == 0:
        return
    aligned = all(a % 16 == 0 for row in addresses for a in row)
    coefs = coefs.to(torch.float32).contiguous()
    _multi_tensor_step_kernel[(n_chunks,)](
        meta, chunks, coefs, coefs if grad_scale is None else grad_scale,
        coefs if found_inf is None else found_inf,
        1.0 - beta1, beta2, 1.0 - beta2, eps, weight_decay, decay_factor,
        P_DTYPE=_TL_DTYPES[groups[0][0].dtype], G_DTYPE=_TL_DTYPES[groups[0][1].dtype],
        ADABOUND=adabound, AMSGRAD=amsgrad, MAXIMIZE=maximize, DECOUPLED=decoupled,
        HAS_GRAD_SCALE=grad_scale is not None, HAS_FOUND_INF=found_inf is not None,
        ALIGN=16 if aligned else 1, BLOCK=_BLOCK, num_warps=_NUM_WARPS,
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
    groups = _check(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, amsgrad,
                    grad_scale=grad_scale, found_inf=found_inf)
    steps = _steps(state_steps, params[0].device)
    # torch.optim.Adam: step_size = lr / (1 - beta1**t), denominator scale sqrt(1 - beta2**t)
    coefs = torch.stack([lr / (1.0 - beta1 ** steps), (1.0 - beta2 ** steps).sqrt(),
                         torch.zeros_like(steps)], dim=1)
    _launch(groups, coefs, grad_scale, found_inf, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay, decay_factor=1.0 - lr * weight_decay, adabound=False,
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
    if base_lr <= 0:
        raise ValueError(f"base_lr must be positive, got {base_lr}")
    if not params:
        return
    groups = _check(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
                    amsbound, grad_scale=grad_scale, found_inf=found_inf)
    steps = _steps(state_steps, params[0].device)
    bound = final_lr * lr / base_lr
    # gamma * t == 0 leaves the step unbounded above (also for lr == 0: no 0 * inf)
    upper = torch.where(gamma * steps > 0, bound * (1.0 + 1.0 / (gamma * steps)), math.inf)
    coefs = torch.stack([lr * (1.0 - beta2 ** steps).sqrt() / (1.0 - beta1 ** steps),
                         bound * (1.0 - 1.0 / (gamma * steps + 1.0)), upper], dim=1)
    _launch(groups, coefs, grad_scale, found_inf, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay, decay_factor=1.0 - lr * weight_decay, adabound=True,
            amsgrad=amsbound, maximize=False, decoupled=decoupled)


__all__ = ["adabound_step_triton", "adam_step_triton"]
