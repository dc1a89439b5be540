"""The ``nol_fast::fno_block`` custom op: one whole FNO block in channels-last layout.

An FNO training step spends most of its time around the spectral convolutions: pointwise
layers, skips, activations and their gradients. In channels-last layout ``(batch, *grid,
channels)`` all of them are GEMMs over the grid points or single passes over the activations,
and the spectral convolution's truncated DFTs run in the same layout, so a block needs no
transpose. The op returns what its backward op (``nol_fast::fno_block_backward``) needs next to
its output; torch.compile sees two opaque nodes with fake implementations. Eager calls run the
same kernels without the dispatcher (:class:`~nol_fast.ops.eager.EagerOp`).

Backends (chosen as for ``nol_fast::channel_mlp``, see
:func:`~nol_fast.ops.pointwise.op.resolve_layer_backend`):

``'cpu'``
    The custom op (:mod:`~nol_fast.ops.fno_block.cpu`), for float32 and bfloat16 CPU tensors
    with the compiled extension.
``'reference'``
    Plain torch (:mod:`~nol_fast.ops.fno_block.reference`), differentiated by autograd.

Under autocast (bfloat16 on the CPU) the block computes in the autocast dtype; the spectral
convolution's channel mixing stays in complex float32, and parameter gradients are float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nol_fast.ops.eager import EagerOp
from nol_fast.ops.fno_block import cpu, reference
from nol_fast.ops.fno_block.spec import BlockParams, BlockSpec, pack, unpack
from nol_fast.ops.pointwise.epilogue import GRAD_DTYPES
from nol_fast.ops.pointwise.op import compute_dtype, resolve_layer_backend
from nol_fast.ops.spectral_conv.modes import mode_index


def _spec(n_modes: list[int], fno_skip: str, mlp_skip: str, activation: str,
          use_mlp: bool) -> BlockSpec:
    return BlockSpec(tuple(n_modes), fno_skip, mlp_skip, activation, use_mlp)


@dataclass(frozen=True)
class _Kernels:
    """The CPU kernels of one block (:class:`~nol_fast.ops.eager.Kernels`), shared by the custom
    ops and :class:`~nol_fast.ops.eager.EagerOp`."""

    spec: BlockSpec

    def forward(self, x: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
        # x: (batch, *grid, channels) -> [out, grad1, a1, grad_hidden, hidden, grad2, x_modes]
        with torch.autocast("cpu", enabled=False):
            return cpu.cpu_fno_block(x, unpack(params, self.spec), self.spec)

    def backward(self, grad_out: torch.Tensor, x: torch.Tensor, params: list[torch.Tensor],
                 saved: list[torch.Tensor], needs_input_grad: bool = True
                 ) -> list[torch.Tensor]:
        # [grad_x, *grads of params]
        with torch.autocast("cpu", enabled=False):
            grad_x, grads = cpu.cpu_fno_block_backward(grad_out, x,
                                                       unpack(params, self.spec), saved,
                                                       self.spec)
        return [grad_x, *(g.contiguous() for g in pack(grads, self.spec))]


@torch.library.custom_op("nol_fast::fno_block", mutates_args=(), device_types="cpu")
def _fno_block(x: torch.Tensor, params: list[torch.Tensor], n_modes: list[int], fno_skip: str,
               mlp_skip: str, activation: str, use_mlp: bool) -> list[torch.Tensor]:
    spec = _spec(n_modes, fno_skip, mlp_skip, activation, use_mlp)
    return _Kernels(spec).forward(x, params)


@_fno_block.register_fake
def _(x, params, n_modes, fno_skip, mlp_skip, activation, use_mlp):
    spec = _spec(n_modes, fno_skip, mlp_skip, activation, use_mlp)
    grid, channels = tuple(x.shape[1:-1]), x.shape[-1]
    rows = x.numel() // channels
    activated = activation != "none"
    width = unpack(params, spec).mlp_weights[0].shape[0] if use_mlp else 0

    def maybe(shape, present, grad=False):
        dtype = GRAD_DTYPES.get(x.dtype, x.dtype) if grad else x.dtype
        return x.new_empty(shape if present else (0,), dtype=dtype)

    n_kept = math.prod(mode_index(n_modes, grid, grid).kept)
    return [x.new_empty(x.shape),
            maybe((rows, channels), activated, grad=True),
            maybe((rows, channels), use_mlp),
            maybe((rows, width), use_mlp, grad=True), maybe((rows, width), use_mlp),
            maybe((rows, channels), activated, grad=True),
            x.new_empty((x.shape[0], 2, n_kept, channels))]


@torch.library.custom_op("nol_fast::fno_block_backward", mutates_args=(), device_types="cpu")
def _fno_block_backward(
    grad_out: torch.Tensor, x: torch.Tensor, params: list[torch.Tensor],
    saved: list[torch.Tensor], n_modes: list[int], fno_skip: str, mlp_skip: str,
    activation: str, use_mlp: bool,
) -> list[torch.Tensor]:
    spec = _spec(n_modes, fno_skip, mlp_skip, activation, use_mlp)
    return _Kernels(spec).backward(grad_out, x, params, saved)


@_fno_block_backward.register_fake
def _(grad_out, x, params, saved, n_modes, fno_skip, mlp_skip, activation, use_mlp):
    return [x.new_empty(x.shape), *(p.new_empty(p.shape) for p in params)]


def _setup_context(ctx, inputs, output) -> None:
    x, params, n_modes, fno_skip, mlp_skip, activation, use_mlp = inputs
    saved = output[1:]
    ctx.save_for_backward(x, *params, *saved)
    ctx.mark_non_differentiable(*saved)
    # The saved outputs get no gradient; without this autograd would fill a zero tensor of
    # each one's size for the backward call (several activation-sized fills per block).
    ctx.set_materialize_grads(False)
    ctx.n_params = len(params)
    ctx.options = (n_modes, fno_skip, mlp_skip, activation, use_mlp)


def _backward(ctx, grads):
    if grads[0] is None:  # the output took no part in the loss
        return None, None, None, None, None, None, None
    x, *rest = ctx.saved_tensors
    params, saved = rest[:ctx.n_params], rest[ctx.n_params:]
    grad_x, *grad_params = _fno_block_backward(grads[0].contiguous(), x, params, saved,
                                               *ctx.options)
    return grad_x, grad_params, None, None, None, None, None


_fno_block.register_autograd(_backward, setup_context=_setup_context)


def fno_block(x: torch.Tensor, params: BlockParams, spec: BlockSpec,
              backend: str | None = None) -> torch.Tensor:
    """One FNO block on channels-last ``x: (batch, *grid, channels)``.

    Parameters
    ----------
    x : Tensor
        The block's input.
    params : BlockParams
        The block's parameters (see :class:`~nol_fast.ops.fno_block.spec.BlockParams`).
    spec : BlockSpec
        The block's options.
    backend : str, optional
        ``'reference'``, ``'cpu'`` or ``None`` (see the module docstring).

    Returns
    -------
    Tensor
        ``(batch, *grid, channels)`` in the compute dtype (autocast's, or the input's).

    Examples
    --------
    >>> spec = BlockSpec((4, 4), "linear", "soft-gating", "gelu", True)
    >>> params = BlockParams(torch.randn(3, 3, 4, 3, dtype=torch.cfloat), torch.zeros(3),
    ...                      torch.randn(3, 3), (torch.randn(2, 3), torch.randn(3, 2)),
    ...                      (torch.zeros(2), torch.zeros(3)), torch.ones(3))
    >>> fno_block(torch.randn(2, 8, 8, 3), params, spec).shape
    torch.Size([2, 8, 8, 3])
    """
    x = x.to(compute_dtype(x))
    if resolve_layer_backend(backend, x) == "reference":
        return reference.reference_fno_block(x, params, spec)
    if not torch.compiler.is_compiling():
        return EagerOp.apply(_Kernels(spec), x.contiguous(), *pack(params, spec))
    return _fno_block(x.contiguous(), pack(params, spec), list(spec.n_modes), spec.fno_skip,
                      spec.mlp_skip, spec.activation, spec.use_mlp)[0]
