"""Fused CPU FNO block in channels-last layout: GEMMs, truncated DFTs and one-pass epilogues.

Forward, for ``x`` viewed as a ``(rows, channels)`` matrix (one row per grid point):

1. the spectral convolution's truncated DFTs in channels-last layout
   (:func:`nol_fast.ops.spectral_conv.cpu.forward_modes`), ending in ``y: (rows, C)``;
2. a linear ``fno_skip`` is added by the GEMM ``y += x @ W^T`` itself (beta = 1);
3. one epilogue pass: ``pre1 = y + bias (+ identity or soft-gating skip)``, ``a1 = act(pre1)``;
4. the channel MLP: GEMM, one bias+GELU pass, GEMM (a linear ``mlp_skip`` added by a GEMM);
5. one epilogue pass: ``pre2 = m + bias (+ skip)``, ``out = act(pre2)``.

The backward pass runs the same pieces in reverse: an epilogue pass gives the activation
gradient, the bias and soft-gating gradients and the skip's input gradient at once; weight
gradients are single GEMMs over all rows; every input gradient is accumulated into one buffer,
the last contribution (the spectral convolution's) by its final GEMM.

Against the same block as separate torch ops (channels-first ``Conv1d`` layers, unfused bias,
skip, activation and their gradients) this reads and writes each activation a few times
instead of a dozen; ``nol-fast benchmark e2e`` measures the whole training step.
"""

from __future__ import annotations

import functools

import torch

from nol_fast.ops.fno_block.spec import BlockParams, BlockSpec, has_weight
from nol_fast.ops.pointwise.cpu import linear_rows, weight_grad
from nol_fast.ops.pointwise.epilogue import epilogue_backward, epilogue_forward
from nol_fast.ops.spectral_conv import cpu as spectral
from nol_fast.ops.spectral_conv.modes import mode_index


@functools.lru_cache(maxsize=32)
def _zeros(channels: int) -> torch.Tensor:
    # The bias of the second activation of a block without channel MLP (read only).
    return torch.zeros(channels)


def _epilogue_skip(kind: str, x: torch.Tensor, weight: torch.Tensor | None
                   ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(x, gamma)`` for the epilogue: the skips it adds itself (identity, soft-gating)."""
    if kind == "identity":
        return x, None
    if kind == "soft-gating":
        return x, weight
    return None, None


def _add_linear_skip(y: torch.Tensor, kind: str, x: torch.Tensor, weight: torch.Tensor | None
                     ) -> None:
    if kind == "linear":
        y.addmm_(x, weight.to(x.dtype).T)


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(0)


def cpu_fno_block(x: torch.Tensor, params: BlockParams, spec: BlockSpec) -> list[torch.Tensor]:
    """``[out, pre1, a1, hidden_pre, hidden, pre2, x_modes]`` for ``x: (B, *grid, C)``.

    Tensors the backward pass does not need, or that would be another output again (after the
    last block, where there is no activation), are empty: see :func:`cpu_fno_block_backward`.
    ``x_modes`` is the real view of the kept input spectrum, ``(modes, B, C, 2)``.
    """
    grid, channels = tuple(x.shape[1:-1]), x.shape[-1]
    rows = x.reshape(-1, channels)
    act = spec.activation
    y, x_modes = spectral.forward_modes(x, params.spectral_weight,
                                        mode_index(spec.n_modes, grid, grid), grid, True)
    y = y.view(-1, channels)
    _add_linear_skip(y, spec.fno_skip, rows, params.fno_skip)
    pre1, a1 = epilogue_forward(y, params.spectral_bias, act,
                                *_epilogue_skip(spec.fno_skip, rows, params.fno_skip))
    hidden_pre = hidden = pre2 = None
    if spec.use_mlp:
        (w1, w2), (b1, b2) = params.mlp_weights, params.mlp_biases
        hidden_pre, hidden = epilogue_forward(linear_rows(a1, w1), b1, "gelu")
        m = linear_rows(hidden, w2)
        _add_linear_skip(m, spec.mlp_skip, rows, params.mlp_skip)
        pre2, out = epilogue_forward(m, b2, act,
                                     *_epilogue_skip(spec.mlp_skip, rows, params.mlp_skip))
    elif act == "none":
        out = a1
    else:
        out = epilogue_forward(a1, _zeros(channels), act, keep_pre=False)[1]
    saved = [pre1 if act != "none" else None,
             a1 if a1 is not out else None,
             hidden_pre, hidden,
             pre2 if pre2 is not out else None]
    return [out.view(x.shape), *(_empty(x) if t is None else t for t in saved),
            torch.view_as_real(x_modes)]


def cpu_fno_block_backward(
    grad_out: torch.Tensor, x: torch.Tensor, params: BlockParams, saved: list[torch.Tensor],
    spec: BlockSpec,
) -> tuple[torch.Tensor, BlockParams]:
    """``(grad_x, grads)`` of :func:`cpu_fno_block`; ``saved`` is its output without ``out``.

    ``grads`` holds one gradient per parameter (float32, the spectral weight's complex), in a
    :class:`BlockParams`.
    """
    grid, channels = tuple(x.shape[1:-1]), x.shape[-1]
    rows = x.reshape(-1, channels)
    pre1, a1, hidden_pre, hidden, pre2, x_modes = saved
    act = spec.activation
    g = grad_out.reshape(-1, channels)
    grads = BlockParams(None, None)  # type: ignore[arg-type]
    grad_x = None
    if spec.use_mlp:
        (w1, w2), _ = params.mlp_weights, params.mlp_biases
        skip_x, gamma = _epilogue_skip(spec.mlp_skip, rows, params.mlp_skip)
        g2, b2, gate2, grad_x = epilogue_backward(
            g, pre2 if pre2.numel() else None, act, True, skip_x, gamma)
        if spec.mlp_skip == "linear":
            grads.mlp_skip = weight_grad(g2, rows, params.mlp_skip)
            grad_x = torch.mm(g2, params.mlp_skip.to(g2.dtype))
        elif spec.mlp_skip == "soft-gating":
            grads.mlp_skip = gate2
        w2_grad = weight_grad(g2, hidden, w2)
        g_hidden, b1, _, _ = epilogue_backward(torch.mm(g2, w2.to(g2.dtype)), hidden_pre, "gelu")
        w1_grad = weight_grad(g_hidden, a1, w1)
        grads.mlp_weights, grads.mlp_biases = (w1_grad, w2_grad), (b1, b2)
        g = torch.mm(g_hidden, w1.to(g_hidden.dtype))
    elif act != "none":
        g = epilogue_backward(g, a1, act, want_bias=False)[0]
    skip_x, gamma = _epilogue_skip(spec.fno_skip, rows, params.fno_skip)
    g1, grads.spectral_bias, gate1, grad_x = epilogue_backward(
        g, pre1 if act != "none" else None, act, True, skip_x, gamma, grad_x)
    if spec.fno_skip == "linear":
        grads.fno_skip = weight_grad(g1, rows, params.fno_skip)
        w = params.fno_skip.to(g1.dtype)
        grad_x = torch.mm(g1, w) if grad_x is None else grad_x.addmm_(g1, w)
    elif spec.fno_skip == "soft-gating":
        grads.fno_skip = gate1
    grad_x, grads.spectral_weight = spectral.backward_modes(
        g1.view(x.shape), torch.view_as_complex(x_modes), params.spectral_weight,
        mode_index(spec.n_modes, grid, grid), grid, True,
        None if grad_x is None else grad_x.view(x.shape))
    return grad_x, grads
