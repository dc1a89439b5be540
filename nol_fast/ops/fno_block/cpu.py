"""Fused CPU FNO block in channels-last layout: GEMMs, truncated DFTs and one-pass epilogues.

Forward, for ``x`` viewed as a ``(rows, channels)`` matrix (one row per grid point):

1. the spectral convolution's truncated DFTs in channels-last layout
   (:func:`nol_fast.ops.spectral_conv.cpu.forward_modes`), ending in ``y: (rows, C)``;
2. a linear ``fno_skip`` is added by the GEMM ``y += x @ W^T`` itself (beta = 1);
3. one epilogue pass: ``a1 = act(y + bias (+ identity or soft-gating skip))``, keeping
   ``act'`` there for the backward pass;
4. the channel MLP: GEMM, one bias+GELU pass, GEMM (a linear ``mlp_skip`` added by a GEMM);
5. one epilogue pass: ``out = act(m + bias (+ skip))``, keeping ``act'``.

The backward pass runs the same pieces in reverse: an epilogue pass (a multiply by the kept
derivative, no activation math) gives the activation gradient, the bias and soft-gating
gradients and the skip's input gradient at once; each weight gradient is one float32
reduction over all rows (:mod:`~nol_fast.ops.pointwise.row_reduction`); every input gradient
is accumulated into one buffer, the last contribution (the spectral convolution's) by its final
GEMM.

Against the same block as separate torch ops (channels-first ``Conv1d`` layers, unfused bias,
skip, activation and their gradients) this reads and writes each activation a few times
instead of a dozen; ``nol-fast benchmark e2e`` measures the whole training step.
"""

from __future__ import annotations

import functools

import torch

from nol_fast.ops.fno_block.spec import BlockParams, BlockSpec
from nol_fast.ops.pointwise.cpu import linear_rows, matmul_rows, weight_grad
from nol_fast.ops.pointwise.epilogue import epilogue_backward, epilogue_forward
from nol_fast.ops.spectral_conv import cpu as spectral
from nol_fast.ops.spectral_conv.modes import mode_index
from nol_fast.ops.workspace import Workspace


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
        matmul_rows(x, weight.T, out=y, add=True)


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(0)


def cpu_fno_block(x: torch.Tensor, params: BlockParams, spec: BlockSpec) -> list[torch.Tensor]:
    """``[out, grad1, a1, grad_hidden, hidden, grad2, x_modes]`` for ``x: (B, *grid, C)``.

    ``grad1``, ``grad_hidden`` and ``grad2`` are the derivatives of the block's two activations
    and of the MLP's GELU at their inputs; ``a1`` (the MLP's input) and ``hidden`` (its hidden
    values) are the inputs of weight gradients. Those the backward pass does not need are
    empty; see :func:`cpu_fno_block_backward`. ``x_modes`` is the kept input spectrum as the
    truncated DFTs leave it: real and imaginary parts, ``(B, 2, modes, C)``, in the dtype of
    ``x``.
    """
    grid, channels = tuple(x.shape[1:-1]), x.shape[-1]
    rows = x.reshape(-1, channels)
    act = spec.activation
    y, x_modes = spectral.forward_modes(x, params.spectral_weight,
                                        mode_index(spec.n_modes, grid, grid), grid, True)
    y = y.view(-1, channels)
    _add_linear_skip(y, spec.fno_skip, rows, params.fno_skip)
    grad1, a1 = epilogue_forward(y, params.spectral_bias, act,
                                 *_epilogue_skip(spec.fno_skip, rows, params.fno_skip))
    grad_hidden = hidden = grad2 = None
    if spec.use_mlp:
        (w1, w2), (b1, b2) = params.mlp_weights, params.mlp_biases
        grad_hidden, hidden = epilogue_forward(linear_rows(a1, w1), b1, "gelu")
        m = linear_rows(hidden, w2)
        _add_linear_skip(m, spec.mlp_skip, rows, params.mlp_skip)
        grad2, out = epilogue_forward(m, b2, act,
                                      *_epilogue_skip(spec.mlp_skip, rows, params.mlp_skip))
    elif act == "none":
        out = a1
    else:  # the second activation, on a1 itself (a1 is not needed after it)
        grad2, out = epilogue_forward(a1, _zeros(channels), act)
    saved = [grad1, a1 if spec.use_mlp else None, grad_hidden, hidden, grad2]
    return [out.view(x.shape), *(_empty(x) if t is None else t for t in saved),
            x_modes]


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
    grad1, a1, grad_hidden, hidden, grad2, x_modes = (
        t if t.numel() else None for t in saved)
    g = grad_out.reshape(-1, channels)
    dtype, wide = g.dtype, g.shape

    workspace = Workspace()

    def scratch(name: str, shape: tuple[int, int]) -> torch.Tensor:
        # the gradients between the block's layers live only in this call: two buffers, one
        # as wide as the block and one as wide as its MLP, each reused as soon as it is read
        return workspace.take(name, shape, dtype)

    grads = BlockParams(None, None)  # type: ignore[arg-type]
    grad_x = None
    if spec.use_mlp:
        (w1, w2), _ = params.mlp_weights, params.mlp_biases
        narrow = (g.shape[0], w1.shape[0])
        g2, b2, gate2, grad_x = epilogue_backward(
            g, grad2, True, *_epilogue_skip(spec.mlp_skip, rows, params.mlp_skip),
            grad_pre_out=scratch("wide", wide) if grad2 is not None else None)
        if spec.mlp_skip == "linear":
            grads.mlp_skip = weight_grad(g2, rows, params.mlp_skip)
            grad_x = matmul_rows(g2, params.mlp_skip)
        elif spec.mlp_skip == "soft-gating":
            grads.mlp_skip = gate2
        w2_grad = weight_grad(g2, hidden, w2)
        g_hidden = matmul_rows(g2, w2, out=scratch("narrow", narrow))
        g_hidden, b1, _, _ = epilogue_backward(g_hidden, grad_hidden, grad_pre_out=g_hidden)
        grads.mlp_weights = (weight_grad(g_hidden, a1, w1), w2_grad)
        grads.mlp_biases = (b1, b2)
        g = matmul_rows(g_hidden, w1, out=scratch("wide", wide))
    elif grad2 is not None:
        g = epilogue_backward(g, grad2, want_bias=False, grad_pre_out=scratch("wide", wide))[0]
    # in place where g is already a scratch buffer; grad_out itself is never written
    g1_out = g if g.data_ptr() != grad_out.data_ptr() else scratch("wide", wide)
    g1, grads.spectral_bias, gate1, grad_x = epilogue_backward(
        g, grad1, True, *_epilogue_skip(spec.fno_skip, rows, params.fno_skip), grad_x,
        grad_pre_out=g1_out if grad1 is not None else None)
    if spec.fno_skip == "linear":
        grads.fno_skip = weight_grad(g1, rows, params.fno_skip)
        grad_x = matmul_rows(g1, params.fno_skip, out=grad_x, add=grad_x is not None)
    elif spec.fno_skip == "soft-gating":
        grads.fno_skip = gate1
    grad_x, grads.spectral_weight = spectral.backward_modes(
        g1.view(x.shape), x_modes, params.spectral_weight, mode_index(spec.n_modes, grid, grid),
        grid, True, None if grad_x is None else grad_x.view(x.shape))
    return grad_x, grads
