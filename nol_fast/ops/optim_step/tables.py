"""Host side of the multi-tensor step kernels on a device: checks, tables and coefficients.

The Triton kernel (:mod:`nol_fast.ops.triton.optim`) and the CUDA kernel
(``kernels/multi_tensor_optim.cu``) read the same inputs:

- a tensor table, one row of six int64 per tensor: the addresses of ``param, grad, exp_avg,
  exp_avg_sq`` and ``max_exp_avg_sq`` (0 when unused), then the element count;
- a chunk table: every tensor cut into :data:`BLOCK`-element chunks, one ``(tensor id, first
  element)`` row per chunk; program (or CUDA block) ``i`` updates chunk ``i``;
- a float32 coefficient table, four per tensor, folded on the device from the step counts
  and the learning rate (bias corrections, AdaBound's bounds, the decoupled weight-decay
  factor), so neither a step count nor a tensor learning rate is read on the host.

Both integer tables go to the device in one copy, cached by addresses and sizes: the
optimizer state does not move between steps.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

BLOCK = 4096
PARAM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@functools.lru_cache(maxsize=32)
def _tables(
    addresses: tuple[tuple[int, ...], ...], numels: tuple[int, ...], device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    meta = torch.tensor([(*a, n) for a, n in zip(addresses, numels, strict=True)],
                        dtype=torch.int64).reshape(-1)
    chunks = torch.tensor([(t, s) for t, n in enumerate(numels) for s in range(0, n, BLOCK)],
                          dtype=torch.int64).reshape(-1)
    packed = torch.cat([meta, chunks]).to(device)
    return packed[:meta.numel()], packed[meta.numel():], chunks.numel() // 2


def tables(groups: list[list[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """Tensor table, chunk table, number of chunks, and whether all addresses are 16-aligned.

    ``groups`` holds ``[param, grad, exp_avg, exp_avg_sq(, max_exp_avg_sq)]`` per tensor.
    """
    addresses = tuple(tuple(t.data_ptr() for t in g) + (0,) * (5 - len(g)) for g in groups)
    meta, chunks, n_chunks = _tables(addresses, tuple(g[0].numel() for g in groups),
                                     groups[0][0].device)
    aligned = all(a % 16 == 0 for row in addresses for a in row)
    return meta, chunks, n_chunks, aligned


def check_groups(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
    exp_avgs: Sequence[torch.Tensor], exp_avg_sqs: Sequence[torch.Tensor],
    max_exp_avg_sqs: Sequence[torch.Tensor] | None, state_steps: Sequence[object],
    use_max: bool, **scalars: torch.Tensor | None,
) -> list[list[torch.Tensor]]:
    """Validate the lists; return the per-tensor groups ``[p, g, m, v(, vmax)]``.

    Params must share one dtype of :data:`PARAM_DTYPES`, grads one such dtype, moments are
    float32; all dense, contiguous and on one device, with their param's shape.
    """
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
            if t.dtype != want or t.dtype not in PARAM_DTYPES:
                raise TypeError(f"{name} {i} is {t.dtype}; params (float32, bfloat16 or "
                                "float16) and grads must each share one dtype, moments float32")
    for name, t in scalars.items():
        if t is not None and (t.numel() != 1 or t.device != device):
            raise ValueError(f"{name} must be a 1-element tensor on {device}")
    return groups


def step_counts(state_steps: Sequence[object], device: torch.device) -> torch.Tensor:
    """The step counts as a float64 tensor on ``device`` (no host sync for device tensors)."""
    if all(isinstance(s, torch.Tensor) for s in state_steps):
        return torch.stack([s.reshape(()).to(device, torch.float64) for s in state_steps])
    return torch.tensor([float(s) for s in state_steps], dtype=torch.float64, device=device)


def adam_coefficients(
    steps: torch.Tensor, *, lr: float | torch.Tensor, beta1: float, beta2: float,
    weight_decay: float,
) -> torch.Tensor:
    """Per tensor: ``lr / (1 - beta1**t)``, ``sqrt(1 - beta2**t)``, 0 and ``1 - lr * wd``.

    As float32; ``lr`` may be a tensor on the device (capturable optimizers).
    """
    return torch.stack([lr / (1.0 - beta1 ** steps), (1.0 - beta2 ** steps).sqrt(),
                        torch.zeros_like(steps), _decay_factor(steps, lr, weight_decay)],
                       dim=1).to(torch.float32).contiguous()


def _decay_factor(steps: torch.Tensor, lr: float | torch.Tensor, weight_decay: float):
    """``1 - lr * weight_decay`` for every tensor, the decoupled weight-decay factor."""
    return torch.ones_like(steps) - lr * weight_decay


def adabound_coefficients(
    steps: torch.Tensor, *, lr: float, base_lr: float, beta1: float, beta2: float,
    final_lr: float, gamma: float, weight_decay: float,
) -> torch.Tensor:
    """Per tensor: AdaBound's step size (both bias corrections), bounds and ``1 - lr * wd``.

    The bounds are ``fl * (1 - 1 / (gamma * t + 1))`` and ``fl * (1 + 1 / (gamma * t))`` with
    ``fl = final_lr * lr / base_lr``; ``gamma * t == 0`` leaves the step unbounded above.
    """
    if base_lr <= 0:
        raise ValueError(f"base_lr must be positive, got {base_lr}")
    bound = final_lr * lr / base_lr
    # torch.where instead of arithmetic, so that lr == 0 gives no 0 * inf
    upper = torch.where(gamma * steps > 0, bound * (1.0 + 1.0 / (gamma * steps)), math.inf)
    return torch.stack([lr * (1.0 - beta2 ** steps).sqrt() / (1.0 - beta1 ** steps),
                        bound * (1.0 - 1.0 / (gamma * steps + 1.0)), upper,
                        _decay_factor(steps, lr, weight_decay)],
                       dim=1).to(torch.float32).contiguous()
