"""The ``nol_fast::channel_mlp`` custom op: a pointwise MLP in channels-last layout.

The FNO's lifting and projection are pointwise MLPs. In channels-last layout
``(batch, *grid, channels)`` every layer is one GEMM over all grid points, which the CPU runs at
close to its GEMM speed, whereas the channels-first ``Conv1d`` of the public layer runs far below
it. The op returns the hidden layers' pre-activations next to the output, from which its
backward op (``nol_fast::channel_mlp_backward``) recomputes the activations; torch.compile sees
two opaque nodes with fake implementations. Eager calls run the same kernels without the
dispatcher (:class:`~nol_fast.ops.eager.EagerOp`).

Backends
--------
``'cpu'``
    The custom op: every layer of a tile of rows at once in C++, while the tile is in cache
    (:mod:`~nol_fast.ops.pointwise.cpu`), for float32 and bfloat16 CPU tensors; needs the
    compiled extension ``nol_fast._C``.
``'reference'``
    Plain torch (:mod:`~nol_fast.ops.pointwise.reference`), any device and dtype,
    differentiated by autograd.

Selection order (shared by the channels-last FNO ops, see :func:`resolve_layer_backend`): the
``backend`` argument, then ``$NOL_FAST_BACKEND`` when it names one of these backends, then
``'cpu'`` where it runs, else ``'reference'``.

Mixed precision: under autocast (bfloat16 on the CPU) the layers store their activations in
the autocast dtype and compute in float32 with float32 weights; weight and bias gradients are
float32.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nol_fast.ops.eager import EagerOp
from nol_fast.ops.extension import missing
from nol_fast.ops.pointwise import cpu, reference
from nol_fast.ops.pointwise.epilogue import STORAGE_CODES

BACKENDS = ("reference", "cpu")
ENV_VAR = "NOL_FAST_BACKEND"


def backend_status(backend: str, device_type: str) -> str | None:
    """``None`` if ``backend`` runs on ``device_type`` here, else the reason it does not."""
    if backend == "reference":
        return None
    if backend == "cpu":
        if device_type != "cpu":
            return "runs on CPU tensors only"
        return missing()
    raise ValueError(f"unknown channels-last layer backend {backend!r}; choose one of {BACKENDS}")


def resolve_layer_backend(requested: str | None, x: torch.Tensor) -> str:
    """The backend of the channels-last FNO ops (``channel_mlp``, ``fno_block``) for ``x``.

    An explicit ``requested`` backend that cannot run raises; ``$NOL_FAST_BACKEND`` is a
    preference, skipped where it names another op's backend or cannot run. The ``'cpu'``
    kernels store float32 and bfloat16, so other dtypes (float64 for gradcheck) take the
    reference path.

    Examples
    --------
    >>> resolve_layer_backend(None, torch.zeros(2, dtype=torch.float64))
    'reference'
    """
    if requested not in (None, "auto"):
        reason = backend_status(requested, x.device.type)
        if reason is None and requested == "cpu" and x.dtype not in STORAGE_CODES:
            reason = f"computes in float32 or bfloat16, got {x.dtype}"
        if reason is not None:
            raise RuntimeError(f"backend {requested!r} cannot run here ({reason}); use "
                               f"backend='reference' or None")
        return requested
    preferred = os.environ.get(ENV_VAR)
    if preferred == "reference":
        return preferred
    usable = backend_status("cpu", x.device.type) is None and x.dtype in STORAGE_CODES
    return "cpu" if usable else "reference"


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the channels-last ops compute in: autocast's (when on) or the input's."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


@dataclass(frozen=True)
class _Kernels:
    """The CPU kernels of one MLP (:class:`~nol_fast.ops.eager.Kernels`), shared by the custom
    ops and :class:`~nol_fast.ops.eager.EagerOp`; ``params`` are the weights, then the biases."""

    n_layers: int
    activation: str

    def forward(self, x: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
        # x: (..., in); weights[i]: (out_i, in_i); returns [out, *pre_activations]
        n = self.n_layers
        with torch.autocast("cpu", enabled=False):
            out, pres = cpu.cpu_channel_mlp(x, params[:n], params[n:], self.activation)
        return [out, *pres]

    def backward(self, grad_out: torch.Tensor, x: torch.Tensor, params: list[torch.Tensor],
                 saved: list[torch.Tensor], needs_input_grad: bool) -> list[torch.Tensor | None]:
        # [grad_x (None unless needs_input_grad), *grad_weights, *grad_biases]
        n = self.n_layers
        with torch.autocast("cpu", enabled=False):
            grad_x, grad_w, grad_b = cpu.cpu_channel_mlp_backward(
                grad_out, x, params[:n], params[n:], saved, self.activation, needs_input_grad)
        return [grad_x, *grad_w, *grad_b]


@torch.library.custom_op("nol_fast::channel_mlp", mutates_args=(), device_types="cpu")
def _channel_mlp(x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor],
                 activation: str) -> list[torch.Tensor]:
    return _Kernels(len(weights), activation).forward(x, [*weights, *biases])


@_channel_mlp.register_fake
def _(x, weights, biases, activation):
    rows = x.numel() // x.shape[-1]
    return [x.new_empty((*x.shape[:-1], weights[-1].shape[0])),
            *(x.new_empty((rows, w.shape[0])) for w in weights[:-1])]


@torch.library.custom_op("nol_fast::channel_mlp_backward", mutates_args=(), device_types="cpu")
def _channel_mlp_backward(
    grad_out: torch.Tensor, x: torch.Tensor, weights: list[torch.Tensor],
    biases: list[torch.Tensor], pres: list[torch.Tensor], activation: str,
    needs_input_grad: bool,
) -> list[torch.Tensor]:
    # returns [grad_x (empty unless needs_input_grad), *grad_weights, *grad_biases]
    grad_x, *grads = _Kernels(len(weights), activation).backward(
        grad_out, x, [*weights, *biases], pres, needs_input_grad)
    return [x.new_empty(0) if grad_x is None else grad_x, *grads]


@_channel_mlp_backward.register_fake
def _(grad_out, x, weights, biases, pres, activation, needs_input_grad):
    grad_x = x.new_empty(x.shape if needs_input_grad else (0,))
    return [grad_x, *(w.new_empty(w.shape) for w in weights),
            *(x.new_empty((w.shape[0],), dtype=torch.float32) for w in weights)]


def _setup_context(ctx, inputs, output) -> None:
    x, weights, biases, activation = inputs
    saved = output[1:]
    ctx.save_for_backward(x, *weights, *biases, *saved)
    ctx.mark_non_differentiable(*saved)
    # The saved outputs get no gradient; without this autograd would fill a zero tensor of
    # each one's size for the backward call (several activation-sized fills per block).
    ctx.set_materialize_grads(False)
    ctx.n_layers, ctx.activation = len(weights), activation


def _backward(ctx, grads):
    if grads[0] is None:  # the output took no part in the loss
        return None, None, None, None
    x, *rest = ctx.saved_tensors
    n = ctx.n_layers
    grad_x, *grad_params = _channel_mlp_backward(
        grads[0].contiguous(), x, rest[:n], rest[n:2 * n], rest[2 * n:], ctx.activation,
        ctx.needs_input_grad[0])
    return (grad_x if ctx.needs_input_grad[0] else None, grad_params[:n], grad_params[n:],
            None)


_channel_mlp.register_autograd(_backward, setup_context=_setup_context)


def channel_mlp(
    x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
    activation: str = "gelu", backend: str | None = None,
) -> torch.Tensor:
    """Pointwise MLP over the last (channel) dimension of ``x``.

    Parameters
    ----------
    x : Tensor
        ``(..., in_channels)``.
    weights, biases : sequence of Tensor
        ``(out_i, in_i)`` and ``(out_i,)`` per layer.
    activation : {'gelu', 'relu', 'silu', 'tanh'}
        Between the layers (GELU is the exact one).
    backend : str, optional
        ``'reference'``, ``'cpu'`` or ``None`` (see the module docstring).

    Returns
    -------
    Tensor
        ``(..., out_channels)`` in the compute dtype (autocast's, or the input's).

    Examples
    --------
    >>> w = [torch.randn(8, 3), torch.randn(2, 8)]
    >>> channel_mlp(torch.randn(4, 5, 3), w, [torch.zeros(8), torch.zeros(2)]).shape
    torch.Size([4, 5, 2])
    """
    if activation not in reference.ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of: "
                         f"{', '.join(reference.ACTIVATIONS)}")
    x = x.to(compute_dtype(x))
    if resolve_layer_backend(backend, x) == "reference":
        return reference.reference_channel_mlp(x, weights, biases, activation)
    if not torch.compiler.is_compiling():
        return EagerOp.apply(_Kernels(len(weights), activation), x.contiguous(), *weights,
                             *biases)
    return _channel_mlp(x.contiguous(), list(weights), list(biases), activation)[0]
