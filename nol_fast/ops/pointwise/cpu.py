"""Fast CPU channel MLP: one GEMM per layer, its epilogue fused in one pass.

In channels-last layout ``(..., channels)`` a pointwise layer is one plain GEMM over a
``(rows, channels)`` matrix, with no transposes and no broadcast reductions. Bias and
activation follow in one pass (:func:`~nol_fast.ops.pointwise.epilogue.epilogue_forward`), which
also keeps the activation's derivative; in the backward pass the activation gradient (one
multiply by that derivative) and the previous layer's bias gradient take one pass too, and the
weight gradient is one GEMM ``grad^T @ input`` over all rows.

Activations are stored in the compute dtype (float32, or bfloat16 under autocast); the weights
are cast to it for the GEMMs, which accumulate in float32, and weight gradients come back as
float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nol_fast.ops.pointwise.epilogue import epilogue_backward, epilogue_forward


def linear_rows(rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``rows @ weight^T`` in the dtype of ``rows``: ``(n, in) -> (n, out)``."""
    return torch.mm(rows, weight.to(rows.dtype).T)


def weight_grad(grad_rows: torch.Tensor, input_rows: torch.Tensor, like: torch.Tensor
                ) -> torch.Tensor:
    """``grad^T @ input`` over all rows, in the dtype and shape of the weight ``like``.

    The GEMM reduces over every grid point; it runs faster with the narrower side as the rows
    of its result (lifting 3 -> 64: 0.89 ms as ``(64, 3)``, 0.38 ms as ``(3, 64)``, 32 K rows).
    """
    if grad_rows.shape[1] <= input_rows.shape[1]:
        grad = torch.mm(grad_rows.T, input_rows)
    else:
        grad = torch.mm(input_rows.T, grad_rows).T.contiguous()
    return grad.to(like.dtype).reshape(like.shape)


def cpu_channel_mlp(
    x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
    activation: str,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """``(out, act_grads, hidden)`` of the MLP on ``x: (..., in)``.

    For every layer ``i`` but the last, ``hidden[i]`` is its activated output and
    ``act_grads[i]`` the activation's derivative there, both ``(rows, width)``: what the
    backward pass needs.
    """
    h = x.reshape(-1, x.shape[-1])
    act_grads, hidden = [], []
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        y = linear_rows(h, w)
        if i < len(weights) - 1:
            act_grad, h = epilogue_forward(y, b, activation)
            act_grads.append(act_grad)
            hidden.append(h)
        else:
            _, h = epilogue_forward(y, b, "none")
    return h.view(*x.shape[:-1], h.shape[-1]), act_grads, hidden


def cpu_channel_mlp_backward(
    grad_out: torch.Tensor, x: torch.Tensor, weights: Sequence[torch.Tensor],
    act_grads: Sequence[torch.Tensor], hidden: Sequence[torch.Tensor], needs_input_grad: bool,
) -> tuple[torch.Tensor | None, list[torch.Tensor], list[torch.Tensor]]:
    """``(grad_x, grad_weights, grad_biases)`` of :func:`cpu_channel_mlp`.

    ``grad_x`` is ``None`` unless ``needs_input_grad``, which saves the first layer's input
    GEMM (the lifting's input is data).
    """
    n_layers = len(weights)
    inputs = [x.reshape(-1, x.shape[-1]), *hidden]
    g, grad_bias, _, _ = epilogue_backward(grad_out.reshape(-1, grad_out.shape[-1]))
    grad_w: list[torch.Tensor] = [None] * n_layers  # type: ignore[list-item]
    grad_b: list[torch.Tensor] = [None] * n_layers  # type: ignore[list-item]
    grad_b[-1] = grad_bias
    grad_x = None
    for i in reversed(range(n_layers)):
        grad_w[i] = weight_grad(g, inputs[i], weights[i])
        if i == 0 and not needs_input_grad:
            break
        grad_in = torch.mm(g, weights[i].to(g.dtype))
        if i == 0:
            grad_x = grad_in.view(x.shape)
        else:
            g, grad_b[i - 1], _, _ = epilogue_backward(grad_in, act_grads[i - 1])
    return grad_x, grad_w, grad_b
