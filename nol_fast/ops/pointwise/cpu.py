"""Fast CPU channel MLP: one GEMM per layer, its epilogue fused in one pass.

In channels-last layout ``(..., channels)`` a pointwise layer is one plain GEMM over a
``(rows, channels)`` matrix, with no transposes and no broadcast reductions. Bias and
activation follow in one pass (:func:`~nol_fast.ops.pointwise.epilogue.epilogue_forward`); in
the backward pass one pass recomputes a hidden layer's activation and derivative, one more gives
its gradient and the layer's bias gradient, and the weight gradient is one GEMM
``grad^T @ input`` over all rows. Temporaries live in a
:class:`~nol_fast.ops.workspace.Workspace` of the call.

Activations are stored in the compute dtype (float32, or bfloat16 under autocast); the weights
are cast to it for the GEMMs, which accumulate in float32, and weight gradients are computed
and returned in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nol_fast.ops.pointwise.epilogue import GRAD_DTYPES, epilogue_backward, epilogue_forward
from nol_fast.ops.pointwise.row_reduction import reduce_rows
from nol_fast.ops.workspace import Workspace


def linear_rows(rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``rows @ weight^T`` in the dtype of ``rows``: ``(n, in) -> (n, out)``."""
    return torch.mm(rows, weight.to(rows.dtype).T)


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


# Rows of a chunk: a few MiB of the widest layer, so that a chunk's hidden values stay in cache
# between the GEMM that makes them and the one that reads them, and only one chunk's worth of
# temporaries is ever allocated (the wide lifting and projection would otherwise need several
# activation-sized buffers in the backward pass).
CHUNK_ELEMENTS = 1 << 19


def chunks(rows: int, width: int) -> list[slice]:
    """Row slices of at most ``CHUNK_ELEMENTS / width`` rows covering ``rows``.

    Examples
    --------
    >>> chunks(10, 1 << 18)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 6, None), slice(6, 8, None), slice(8, 10, None)]
    """
    step = max(1, CHUNK_ELEMENTS // width)
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def cpu_channel_mlp(
    x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
    activation: str,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(out, pre_activations)`` of the MLP on ``x: (..., in)``, chunk by chunk of rows.

    For every layer but the last, its ``(rows, width)`` pre-activation is kept for the backward
    pass, which recomputes the activation and its derivative from it: the lifting and the
    projection are the widest layers of an FNO, and keeping two values per element there
    (activation and derivative) would cost more memory than the baseline's autograd keeps. The
    activated values of a chunk live only until the next GEMM has read them.
    """
    x_rows = x.reshape(-1, x.shape[-1])
    n = x_rows.shape[0]
    dtype = x_rows.dtype
    pres = [x_rows.new_empty((n, w.shape[0])) for w in weights[:-1]]
    out = x_rows.new_empty((n, weights[-1].shape[0]))
    width = max(w.shape[0] for w in weights)
    workspace = Workspace()
    for part in chunks(n, width):
        h = x_rows[part]
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            last = i == len(weights) - 1
            y = torch.mm(h, w.to(dtype).T, out=(out if last else pres[i])[part])
            if last:
                epilogue_forward(y, b, "none")
            else:
                h = epilogue_forward(y, b, activation, keep="pre",
                                     out=workspace.take(f"hidden{i % 2}", y.shape, dtype))[1]
    return out.view(*x.shape[:-1], out.shape[-1]), pres


def cpu_channel_mlp_backward(
    grad_out: torch.Tensor, x: torch.Tensor, weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor], pres: Sequence[torch.Tensor], activation: str,
    needs_input_grad: bool,
) -> tuple[torch.Tensor | None, list[torch.Tensor], list[torch.Tensor]]:
    """``(grad_x, grad_weights, grad_biases)`` of :func:`cpu_channel_mlp`, chunk by chunk.

    ``grad_x`` is ``None`` unless ``needs_input_grad``, which saves the first layer's input
    GEMM (the lifting's input is data). Weight and bias gradients add up over the chunks in
    float32.
    """
    x_rows = x.reshape(-1, x.shape[-1])
    g_rows = grad_out.reshape(-1, grad_out.shape[-1])
    n, dtype = x_rows.shape[0], g_rows.dtype
    grad_w = [torch.zeros(w.shape, dtype=torch.float32) for w in weights]
    grad_b = [torch.zeros(b.shape, dtype=torch.float32) for b in biases]
    grad_x = torch.empty_like(x_rows) if needs_input_grad else None
    zeros = [torch.zeros_like(b) for b in biases[:-1]]
    width = max(w.shape[0] for w in weights)
    workspace = Workspace()
    for part in chunks(n, width):
        g, bias_sum, _, _ = epilogue_backward(g_rows[part])
        grad_b[-1] += bias_sum
        for i in reversed(range(len(weights))):
            if i == 0:
                grad_w[0] += weight_grad(g, x_rows[part], weights[0])
                if grad_x is not None:
                    torch.mm(g, weights[0].to(dtype), out=grad_x[part])
                break
            # recompute layer i's input and the derivative of the activation that made it
            pre = pres[i - 1][part]
            act_grad, inputs = epilogue_forward(
                pre, zeros[i - 1], activation,
                out=workspace.take("hidden", pre.shape, dtype),
                act_grad=workspace.take("act_grad", pre.shape, GRAD_DTYPES[dtype]))
            grad_w[i] += weight_grad(g, inputs, weights[i])
            grad_in = torch.mm(g, weights[i].to(dtype),
                               out=workspace.take(f"grad{i % 2}", pre.shape, dtype))
            # in place: the gradient of the pre-activation replaces that of the activation
            g, bias_sum, _, _ = epilogue_backward(grad_in, act_grad, grad_pre_out=grad_in)
            grad_b[i - 1] += bias_sum
    return (None if grad_x is None else grad_x.view(x.shape),
            [gw.to(w.dtype) for gw, w in zip(grad_w, weights, strict=True)],
            [gb.to(b.dtype) for gb, b in zip(grad_b, biases, strict=True)])
