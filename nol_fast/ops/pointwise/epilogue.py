"""Fused epilogues of channels-last pointwise layers: the C++ kernels of ``nol_fast._C``.

A pointwise layer in channels-last layout is one GEMM over a ``(rows, channels)`` matrix. What
follows it in an FNO (bias, skip sum, activation) and what precedes its weight gradient in the
backward pass (activation gradient, bias and soft-gating sums, the skip's input gradient) is
elementwise or a per-channel sum; done as separate torch ops, each reads and writes the whole
activation again. :func:`epilogue_forward` and :func:`epilogue_backward` do each side in one
pass (``csrc/pointwise_epilogue_kernel.h``), in float32 arithmetic on float32 or bfloat16
storage.

These wrappers check what the kernels assume (CPU, contiguous, matching shapes and dtypes)
and pass addresses; the ops in :mod:`nol_fast.ops.pointwise` and :mod:`nol_fast.ops.fno_block` call them.
"""

from __future__ import annotations

import torch

from nol_fast.ops.extension import EXTENSION

ACTIVATION_CODES = {"none": 0, "gelu": 1, "relu": 2, "silu": 3, "tanh": 4}
SKIP_CODES = {"none": 0, "identity": 1, "scale": 2}
STORAGE_CODES = {torch.float32: 0, torch.bfloat16: 1}


def _address(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def _check(name: str, t: torch.Tensor | None, like: torch.Tensor, per_channel: bool = False
           ) -> None:
    if t is None:
        return
    shape = like.shape[-1:] if per_channel else like.shape
    dtype = torch.float32 if per_channel else like.dtype
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
    gamma: torch.Tensor | None = None, keep_pre: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``pre = y + bias + skip``, ``out = activation(pre)`` in one pass over ``y``.

    Parameters
    ----------
    y : Tensor
        GEMM output ``(rows, channels)``, float32 or bfloat16; with ``keep_pre`` it is
        overwritten by ``pre``.
    bias : Tensor
        ``(channels,)`` float32.
    activation : {'none', 'gelu', 'relu', 'silu', 'tanh'}
        GELU is the exact (erf) one.
    x, gamma : Tensor, optional
        Skip input ``(rows, channels)`` added to ``y`` (times the per-channel ``gamma``, float32,
        when given).
    keep_pre : bool
        Keep the pre-activation (the backward pass needs it) in ``y``; otherwise ``y`` is
        left alone and only ``out`` is written.

    Returns
    -------
    (pre, out)
        ``pre`` is ``y`` itself (or ``None`` without ``keep_pre``); ``out`` is a new tensor, or
        ``y`` when ``activation`` is ``'none'`` and ``keep_pre``.
    """
    # y, x: (rows, channels)
    for name, t, per_channel in (("y", y, False), ("bias", bias, True), ("x", x, False),
                                 ("gamma", gamma, True)):
        _check(name, t, y, per_channel)
    pre = y if keep_pre else None
    out = y if keep_pre and activation == "none" else torch.empty_like(y)
    EXTENSION.epilogue_forward(
        y.shape[0], y.shape[1], y.data_ptr(), bias.data_ptr(), _address(x), _address(gamma),
        _address(pre), out.data_ptr(), ACTIVATION_CODES[activation], _skip_code(x, gamma),
        STORAGE_CODES[y.dtype], torch.get_num_threads(),
    )
    return pre, out


def epilogue_backward(
    grad_out: torch.Tensor, pre: torch.Tensor | None, activation: str, want_bias: bool = True,
    x: torch.Tensor | None = None, gamma: torch.Tensor | None = None,
    grad_x: torch.Tensor | None = None, want_grad_pre: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of :func:`epilogue_forward` in one pass over ``grad_out``.

    Parameters
    ----------
    grad_out : Tensor
        Gradient of ``out``, ``(rows, channels)``.
    pre : Tensor or None
        The pre-activation kept by the forward pass (``None`` for ``activation='none'``).
    activation : str
        As in the forward pass.
    want_bias : bool
        Return the bias gradient (the per-channel sum of ``grad_pre``).
    x, gamma : Tensor, optional
        The skip of the forward pass: with ``x`` the skip input gradient is returned, with
        ``gamma`` also the gradient of ``gamma``.
    grad_x : Tensor, optional
        Add the skip input gradient into this tensor instead of returning a new one.
    want_grad_pre : bool
        Write ``grad_pre``; without it only the sums and the skip gradient are computed.

    Returns
    -------
    (grad_pre, grad_bias, grad_gamma, grad_x)
        ``grad_pre`` is ``grad_out`` itself for ``activation='none'``; the others are ``None``
        when not asked for. Sums are float32, accumulated in double.
    """
    like = grad_out
    for name, t, per_channel in (("grad_out", grad_out, False), ("pre", pre, False),
                                 ("x", x, False), ("gamma", gamma, True),
                                 ("grad_x", grad_x, False)):
        _check(name, t, like, per_channel)
    if activation != "none" and pre is None:
        raise ValueError(f"epilogue: activation {activation!r} needs the pre-activation")
    channels = grad_out.shape[1]
    if activation == "none":
        grad_pre, write_pre = grad_out, None
    else:
        grad_pre = torch.empty_like(grad_out) if want_grad_pre else None
        write_pre = grad_pre
    grad_bias = grad_out.new_empty(channels, dtype=torch.float32) if want_bias else None
    grad_gamma = grad_out.new_empty(channels, dtype=torch.float32) if gamma is not None else None
    accumulate = grad_x is not None
    if x is not None and grad_x is None:
        grad_x = torch.empty_like(grad_out)
    EXTENSION.epilogue_backward(
        grad_out.shape[0], channels, grad_out.data_ptr(), _address(pre), _address(write_pre),
        _address(grad_bias), _address(x), _address(gamma), _address(grad_gamma),
        _address(grad_x), accumulate, ACTIVATION_CODES[activation], _skip_code(x, gamma),
        STORAGE_CODES[grad_out.dtype], torch.get_num_threads(),
    )
    return grad_pre, grad_bias, grad_gamma, grad_x
