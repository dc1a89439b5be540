"""Fast CPU pointwise layers in channels-last layout: GEMMs, weight gradients, the fused MLP.

In channels-last layout ``(..., channels)`` a pointwise layer is one plain GEMM over a
``(rows, channels)`` matrix, with no transposes and no broadcast reductions
(:func:`linear_rows`), and its weight gradient is one reduction ``grad^T @ input`` over all rows
(:func:`weight_grad`). The FNO block (:mod:`nol_fast.ops.fno_block`) uses both with its fused
epilogues. The lifting and projection MLPs run fused over tiles of rows in C++
(:func:`cpu_channel_mlp`, ``csrc/channel_mlp_kernel.h``).

Activations are stored in the compute dtype (float32, or bfloat16 under autocast); products
accumulate in float32, and weight gradients are computed and returned in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nol_fast.ops.extension import EXTENSION, amx_enabled
from nol_fast.ops.pointwise.epilogue import ACTIVATION_CODES, STORAGE_CODES
from nol_fast.ops.pointwise.row_reduction import reduce_rows


def matmul_rows(a: torch.Tensor, w: torch.Tensor, out: torch.Tensor | None = None,
                add: bool = False) -> torch.Tensor:
    """``a @ w`` in the dtype of ``a``, into ``out`` when given (added to it with ``add``).

    ``a`` is a ``(rows, k)`` channels-last activation and ``w`` a ``(k, n)`` view of a layer's
    float32 weight (``W^T`` forward, ``W`` for the input gradient), cast to ``a``'s dtype as
    autocast casts it. bfloat16 products run on AMX tiles where the CPU has them
    (``rows_matmul`` of ``csrc/kernels_amx.cpp``): oneDNN's bfloat16 GEMM costs about 20 us
    per call before any work and runs these skinny shapes far below the tiles' speed. Otherwise
    torch's GEMM runs.
    """
    if (a.dtype == torch.bfloat16 and w.dtype == torch.float32 and amx_enabled()
            and a.stride(1) == 1 and (out is None or out.stride(1) == 1)):
        rows, k = a.shape
        if out is None:
            out = a.new_empty((rows, w.shape[1]))
        EXTENSION.rows_matmul(rows, k, w.shape[1], a.data_ptr(), a.stride(0), w.data_ptr(),
                              w.stride(0), w.stride(1), out.data_ptr(), out.stride(0), add,
                              torch.get_num_threads())
        return out
    w = w.to(a.dtype)
    if add:
        return out.addmm_(a, w)
    return torch.mm(a, w) if out is None else torch.mm(a, w, out=out)


def linear_rows(rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``rows @ weight^T`` in the dtype of ``rows``: ``(n, in) -> (n, out)``."""
    return matmul_rows(rows, weight.T)


def weight_grad(grad_rows: torch.Tensor, input_rows: torch.Tensor, like: torch.Tensor
                ) -> torch.Tensor:
    """``grad^T @ input`` over all rows, in the dtype and shape of the weight ``like``.

    The reduction over every grid point runs in float32 (:func:`reduce_rows`), with the
    narrower side as the rows of its result: the kernel pads rows of the result to blocks of
    8 and columns to blocks of 32.
    """
    if grad_rows.shape[1] <= input_rows.shape[1]:
        grad = reduce_rows(grad_rows, input_rows)
    else:
        grad = reduce_rows(input_rows, grad_rows).T.contiguous()
    return grad.to(like.dtype).reshape(like.shape)


def _layer_args(x_rows: torch.Tensor, weights: Sequence[torch.Tensor],
                biases: Sequence[torch.Tensor], pres: Sequence[torch.Tensor]):
    """The leading arguments of the ``_C`` channel MLP kernels, and the float32 parameters
    whose addresses they hold (kept alive by the caller for the call)."""
    ws = [w.detach().float().contiguous() for w in weights]
    bs = [b.detach().float().contiguous() for b in biases]
    widths = [x_rows.shape[1], *(w.shape[0] for w in ws)]
    for w, k in zip(ws, widths, strict=False):
        if w.dim() != 2 or w.shape[1] != k:
            raise ValueError(f"channel MLP: weight of shape {tuple(w.shape)} does not take "
                             f"{k} input channels")
    return widths, [w.data_ptr() for w in ws], [b.data_ptr() for b in bs], \
        [p.data_ptr() for p in pres], (ws, bs)


def cpu_channel_mlp(
    x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
    activation: str,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(out, pre_activations)`` of the MLP on ``x: (..., in)``, fused over tiles of rows.

    The kernel (``csrc/channel_mlp_kernel.h``) takes each tile of 64 rows through every layer
    while it is in cache, so a hidden layer is never written out whole and read back: only the
    output and, for every layer but the last, its ``(rows, width)`` pre-activation, which the
    backward pass reads to recompute the activation and its derivative. The lifting and the
    projection are the widest layers of an FNO, and keeping two values per element there
    (activation and derivative) would cost more memory than the baseline's autograd keeps.
    """
    x_rows = x.reshape(-1, x.shape[-1])
    n = x_rows.shape[0]
    pres = [x_rows.new_empty((n, w.shape[0])) for w in weights[:-1]]
    out = x_rows.new_empty((n, weights[-1].shape[0]))
    widths, ws, bs, ps, _params = _layer_args(x_rows, weights, biases, pres)
    EXTENSION.channel_mlp_forward(n, widths, x_rows.data_ptr(), ws, bs, ps, out.data_ptr(),
                                  ACTIVATION_CODES[activation], STORAGE_CODES[x_rows.dtype],
                                  torch.get_num_threads())
    return out.view(*x.shape[:-1], out.shape[-1]), pres


def cpu_channel_mlp_backward(
    grad_out: torch.Tensor, x: torch.Tensor, weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor], pres: Sequence[torch.Tensor], activation: str,
    needs_input_grad: bool,
) -> tuple[torch.Tensor | None, list[torch.Tensor], list[torch.Tensor]]:
    """``(grad_x, grad_weights, grad_biases)`` of :func:`cpu_channel_mlp`, fused likewise.

    ``grad_x`` is ``None`` unless ``needs_input_grad``, which saves the first layer's input
    GEMM (the lifting's input is data). Weight and bias gradients are summed in float32 and
    double per thread, then over the threads in a fixed order.
    """
    x_rows = x.reshape(-1, x.shape[-1])
    g_rows = grad_out.reshape(-1, grad_out.shape[-1]).to(x_rows.dtype).contiguous()
    n = x_rows.shape[0]
    grad_w = [torch.empty(w.shape, dtype=torch.float32) for w in weights]
    grad_b = [torch.empty(b.shape, dtype=torch.float32) for b in biases]
    grad_x = torch.empty_like(x_rows) if needs_input_grad else None
    widths, ws, bs, ps, _params = _layer_args(x_rows, weights, biases, pres)
    EXTENSION.channel_mlp_backward(
        n, widths, g_rows.data_ptr(), x_rows.data_ptr(), ws, bs, ps,
        0 if grad_x is None else grad_x.data_ptr(), [g.data_ptr() for g in grad_w],
        [g.data_ptr() for g in grad_b], ACTIVATION_CODES[activation],
        STORAGE_CODES[x_rows.dtype], torch.get_num_threads())
    return (None if grad_x is None else grad_x.view(x.shape),
            [gw.to(w.dtype) for gw, w in zip(grad_w, weights, strict=True)],
            [gb.to(b.dtype) for gb, b in zip(grad_b, biases, strict=True)])
