"""Fused epilogues of channels-last pointwise layers: the C++ kernels of ``nol_fast._C``.

A pointwise layer in channels-last layout is one GEMM over a ``(rows, channels)`` matrix. What
follows it in an FNO (bias, skip sum, activation) and what precedes its weight gradient in the
backward pass (activation gradient, bias and soft-gating sums, the skip's input gradient) is
elementwise or a per-channel sum; done as separate torch ops, each reads and writes the whole
activation again. :func:`epilogue_forward` and :func:`epilogue_backward` do each side in one
pass (``csrc/pointwise_epilogue_kernel.h``), in float32 arithmetic on float32 or bfloat16
storage.

These wrappers check what the kernels assume (CPU, contiguous, matching shapes and dtypes)
and pass addresses; the ops of :mod:`nol_fast.ops.pointwise` and :mod:`nol_fast.ops.fno_block`
call them.
"""

from __future__ import annotations

import torch

from nol_fast.ops.extension import EXTENSION

ACTIVATION_CODES = {"none": 0, "gelu": 1, "relu": 2, "silu": 3, "tanh": 4}
SKIP_CODES = {"none": 0, "identity": 1, "scale": 2}
STORAGE_CODES = {torch.float32: 0, torch.bfloat16: 1}
# The dtype of a kept activation derivative next to activations of each dtype: float32, or
# 16-bit fixed point on [-0.25, 1.25] next to bfloat16 (2 bytes like bfloat16, but no
# relative error of 2^-9 in every gradient; see Q16 in csrc/pointwise_epilogue_kernel.h).
GRAD_DTYPES = {torch.float32: torch.float32, torch.bfloat16: torch.int16}


def _address(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def _check(name: str, t: torch.Tensor | None, like: torch.Tensor, per_channel: bool = False,
           dtype: torch.dtype | None = None) -> None:
    if t is None:
        return
    shape = like.shape[-1:] if per_channel else like.shape
    dtype = dtype or (torch.float32 if per_channel else like.dtype)
    if t.shape != shape or t.dtype != dtype or not t.is_contiguous() or t.device.type != "cpu":
        raise ValueError(
            f"epilogue: {name} must be a contiguous {dtype} CPU tensor of shape {tuple(shape)}, "
            f"got {t.dtype} {tuple(t.shape)} on {t.device}"
        )


def _skip_code(x: torch.Tensor | None, gamma: torch.Tensor | None) -> int:
    if x is None:
        return SKIP_CODES["none"]
    return SKIP_CODES["identity" if gamma is None else "scale"]


def epilogue_forward(
    y: torch.Tensor, bias: torch.Tensor, activation: str, x: torch.Tensor | None = None,
    gamma: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``out = activation(y + bias + skip)`` in one pass, keeping what the backward pass needs.

    The backward pass needs the activation's derivative at the pre-activation: kept here, where
    the activation's exp and erf are evaluated anyway, it spares the backward pass their cost.

    Parameters
    ----------
    y : Tensor
        ``(rows, channels)``, float32 or bfloat16; a scratch GEMM output, overwritten by the
        kept derivative (or by ``out`` without activation).
    bias : Tensor
        ``(channels,)`` float32.
    activation : {'none', 'gelu', 'relu', 'silu', 'tanh'}
        GELU is the exact (erf) one.
    x, gamma : Tensor, optional
        Skip input ``(rows, channels)`` added to ``y`` (times the per-channel ``gamma``, float32,
        when given).

    Returns
    -------
    (act_grad, out)
        ``act'`` at the pre-activation (dtype ``GRAD_DTYPES[y.dtype]``, in ``y``'s memory),
        ``None`` without activation; and the output.
    """
    # y, x: (rows, channels)
    for name, t, per_channel in (("y", y, False), ("bias", bias, True), ("x", x, False),
                                 ("gamma", gamma, True)):
        _check(name, t, y, per_channel)
    grad = None if activation == "none" else y.view(GRAD_DTYPES[y.dtype])
    out = y if grad is None else torch.empty_like(y)
    EXTENSION.epilogue_forward(
        y.shape[0], y.shape[1], y.data_ptr(), bias.data_ptr(), _address(x), _address(gamma),
        _address(grad), out.data_ptr(), ACTIVATION_CODES[activation], _skip_code(x, gamma),
        STORAGE_CODES[y.dtype], torch.get_num_threads(),
    )
    return grad, out


def epilogue_backward(
    grad_out: torch.Tensor, act_grad: torch.Tensor | None = None, want_bias: bool = True,
    x: torch.Tensor | None = None, gamma: torch.Tensor | None = None,
    grad_x: torch.Tensor | None = None, want_grad_pre: bool = True,
    grad_pre_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of :func:`epilogue_forward` in one pass over ``grad_out``.

    Parameters
    ----------
    grad_out : Tensor
        Gradient of ``out``, ``(rows, channels)``.
    act_grad : Tensor, optional
        The derivative kept by the forward pass (``None`` without activation).
    want_bias : bool
        Return the bias gradient (the per-channel sum of ``grad_pre``).
    x, gamma : Tensor, optional
        The skip of the forward pass: with ``x`` the skip input gradient is returned, with
        ``gamma`` also the gradient of ``gamma``.
    grad_x : Tensor, optional
        Add the skip input gradient into this tensor instead of returning a new one.
    want_grad_pre : bool
        Write ``grad_pre``; without it only the sums and the skip gradient are computed.
    grad_pre_out : Tensor, optional
        Where to write ``grad_pre`` (shaped like ``grad_out``); default: a new tensor.

    Returns
    -------
    (grad_pre, grad_bias, grad_gamma, grad_x)
        ``grad_pre`` is ``grad_out`` itself without ``act_grad``; the others are ``None`` when
        not asked for. Sums are float32, accumulated in double.
    """
    like = grad_out
    for name, t, per_channel in (("grad_out", grad_out, False), ("x", x, False),
                                 ("gamma", gamma, True), ("grad_x", grad_x, False),
                                 ("grad_pre_out", grad_pre_out, False)):
        _check(name, t, like, per_channel)
    _check("act_grad", act_grad, like, dtype=GRAD_DTYPES[like.dtype])
    channels = grad_out.shape[1]
    if act_grad is None:
        grad_pre, write_pre = grad_out, None
    else:
        if want_grad_pre:
            grad_pre = torch.empty_like(grad_out) if grad_pre_out is None else grad_pre_out
        else:
            grad_pre = None
        write_pre = grad_pre
    grad_bias = grad_out.new_empty(channels, dtype=torch.float32) if want_bias else None
    grad_gamma = grad_out.new_empty(channels, dtype=torch.float32) if gamma is not None else None
    accumulate = grad_x is not None
    if x is not None and grad_x is None:
        grad_x = torch.empty_like(grad_out)
    EXTENSION.epilogue_backward(
        grad_out.shape[0], channels, grad_out.data_ptr(), _address(act_grad),
        _address(write_pre), _address(grad_bias), _address(x), _address(gamma),
        _address(grad_gamma), _address(grad_x), accumulate, _skip_code(x, gamma),
        STORAGE_CODES[grad_out.dtype], torch.get_num_threads(),
    )
    return grad_pre, grad_bias, grad_gamma, grad_x
