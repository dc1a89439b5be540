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
optimizer state does not move between steps. Tables that a CUDA-graph capture read are never
evicted (:func:`nol_fast.ops.launch.pinned_cache`), as the graph keeps their addresses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from nol_fast.ops.launch import pinned_cache

BLOCK = 4096
PARAM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@pinned_cache(maxsize=32)  # pinned while a CUDA graph captures a launch that reads it
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


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t`` fills its memory without gaps or overlaps, in any order of its dims
    (contiguous, channels_last, a transpose), so a kernel can walk it as a flat array."""
    if t.is_contiguous():
        return True
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride(), strict=True), key=lambda x: x[1]):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True


def same_layout(t: torch.Tensor, param: torch.Tensor) -> bool:
    """Whether ``t`` has ``param``'s shape and, along every dim longer than 1, its strides:
    element ``i`` of the memory of both is then the same element."""
    if t.shape != param.shape:
        return False
    if t.is_contiguous() and param.is_contiguous():
        return True
    return all(a == b for a, b, n in zip(t.stride(), param.stride(), param.shape, strict=True)
               if n > 1)


def _fits(row: Sequence[torch.Tensor]) -> bool:
    """Whether the kernels take ``[param, grad, exp_avg, exp_avg_sq(, max_exp_avg_sq)]``."""
    param, grad, *moments = row
    return (param.dtype in PARAM_DTYPES and grad.dtype in PARAM_DTYPES
            and all(m.dtype == torch.float32 for m in moments)
            and not param.is_sparse and not grad.is_sparse
            and all(t.device == param.device and same_layout(t, param) for t in row[1:])
            and _dense(param))  # fmt: skip


def launch_groups(
    lists: Sequence[Sequence[torch.Tensor]], use_max: bool
) -> tuple[dict[tuple[torch.device, torch.dtype, torch.dtype], list[int]], list[int]]:
    """Sort the rows of ``lists`` into kernel launches and the rest.

    ``lists`` are the parallel ``params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs``
    (the last read only when ``use_max``). Returns the row indices of each launch, keyed by
    (device, param dtype, grad dtype), and the indices of the rows the kernels cannot take:
    params or grads outside :data:`PARAM_DTYPES`, moments other than float32, or tensors
    whose layouts are not one dense layout (see :func:`same_layout`).
    """
    columns = list(lists[:5] if use_max else lists[:4])
    groups: dict[tuple[torch.device, torch.dtype, torch.dtype], list[int]] = {}
    rest = []
    for i, row in enumerate(zip(*columns, strict=True)):
        if _fits(row):
            groups.setdefault((row[0].device, row[0].dtype, row[1].dtype), []).append(i)
        else:
            rest.append(i)
    return groups, rest


def check_groups(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
    exp_avgs: Sequence[torch.Tensor], exp_avg_sqs: Sequence[torch.Tensor],
    max_exp_avg_sqs: Sequence[torch.Tensor] | None, state_steps: Sequence[object],
    use_max: bool, **scalars: torch.Tensor | None,
) -> list[list[torch.Tensor]]:
    """Validate the lists; return the per-tensor groups ``[p, g, m, v(, vmax)]``.

    Params must share one dtype of :data:`PARAM_DTYPES`, grads one such dtype, moments are
    float32; all dense and on one device, with their param's shape and layout (contiguous,
    channels_last or any other dense order of the dims, see :func:`same_layout`).
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
            if not isinstance(t, torch.Tensor) or t.is_sparse or not _dense(t):
                raise TypeError(f"{name} {i} must be a dense tensor")
            if t.device != device:
                raise ValueError(f"{name} {i} is on {t.device}, params[0] on {device}")
            if t.shape != group[0].shape:
                raise ValueError(f"{name} {i} has shape {tuple(t.shape)}, its param "
                                 f"{tuple(group[0].shape)}")
            if not same_layout(t, group[0]):
                raise TypeError(f"{name} {i} has strides {t.stride()}, its param "
                                f"{group[0].stride()}: they must share one layout")
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
    """The step counts as a float64 tensor on ``device``.

    Counters on one device are stacked there and moved in one copy (none when they live on
    ``device``), so no step reads a counter back to the host. A copy from the host is
    ``non_blocking``: from pageable memory it returns once the driver has staged the data,
    without waiting for the device, and the temporary may then go.
    """
    if all(isinstance(s, torch.Tensor) for s in state_steps):
        if len({s.device for s in state_steps}) > 1:
            state_steps = [s.to(device) for s in state_steps]
        stacked = torch.stack([s if s.dim() == 0 else s.reshape(()) for s in state_steps])
        return stacked.to(device, torch.float64, non_blocking=True)
    return torch.tensor([float(s) for s in state_steps], dtype=torch.float64).to(
        device, non_blocking=True)


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
