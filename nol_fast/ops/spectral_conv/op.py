"""The ``nol_fast::spectral_conv`` custom op: one opaque op, several backends.

The op takes real tensors only (the complex weight travels as ``torch.view_as_real``), so
``torch.compile`` sees a single node with a fake implementation and never traces the complex
FFT arithmetic, whose backward Inductor cannot compile. The op returns ``(y, x_modes)``:
``x_modes`` is the input spectrum on the kept modes (real view), which the backward pass needs
and would otherwise recompute (one more analysis GEMM, about a sixth of the 2-D training
step on the CPU). The backward is a second custom op, ``nol_fast::spectral_conv_backward``,
that returns ``(grad_x, grad_weight)``.

Backends
--------
``'reference'``
    Full FFTs (:mod:`~nol_fast.ops.spectral_conv.reference`), any device.
``'cpu'``
    Truncated DFTs as GEMMs (:mod:`~nol_fast.ops.spectral_conv.cpu`), CPU tensors.
``'triton'``
    ``torch.fft`` around Triton mixing kernels (:mod:`~nol_fast.ops.spectral_conv.cuda`), CUDA
    tensors, needs the ``triton`` package.

Selection order: the ``backend`` argument, then the ``NOL_FAST_BACKEND`` environment variable,
then automatic (``'cpu'`` for CPU tensors, ``'triton'`` for CUDA tensors when it can be
imported, ``'reference'`` otherwise). The choice is made when the op runs, inside the opaque
implementation, so compiled graphs follow the environment variable too.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence

import torch

from nol_fast.ops.selection import triton_status
from nol_fast.ops.spectral_conv import cpu, reference
from nol_fast.ops.spectral_conv.modes import mode_index

logger = logging.getLogger(__name__)

BACKENDS = ("reference", "cpu", "triton")
ENV_VAR = "NOL_FAST_BACKEND"


def backend_status(backend: str, device_type: str) -> str | None:
    """``None`` if ``backend`` runs on ``device_type`` here, else the reason it does not."""
    if backend == "reference":
        return None
    if backend == "cpu":
        return None if device_type == "cpu" else "runs on CPU tensors only"
    if backend == "triton":
        return triton_status(device_type)
    raise ValueError(f"unknown spectral_conv backend {backend!r}; choose one of {BACKENDS}")


def check_backend_name(backend: str | None) -> None:
    """Raise ``ValueError`` unless ``backend`` is ``None``, ``'auto'`` or a known backend."""
    if backend is not None and backend != "auto" and backend not in BACKENDS:
        raise ValueError(
            f"unknown spectral_conv backend {backend!r}; choose one of {BACKENDS} or None"
        )


@functools.cache
def _log_fallback(device_type: str, reason: str) -> None:
    logger.warning("spectral_conv: no fast backend for %s tensors (%s); using 'reference'",
                   device_type, reason)


def resolve_backend(requested: str, device: torch.device) -> str:
    """The backend that runs: ``requested``, else ``$NOL_FAST_BACKEND``, else automatic.

    Parameters
    ----------
    requested : str
        A backend name, or ``'auto'``.
    device : torch.device
        Device of the input.

    Examples
    --------
    >>> resolve_backend("reference", torch.device("cpu"))
    'reference'
    """
    name = requested if requested != "auto" else os.environ.get(ENV_VAR, "auto") or "auto"
    check_backend_name(name)
    if name != "auto":
        reason = backend_status(name, device.type)
        if reason is not None:
            available = [b for b in BACKENDS if backend_status(b, device.type) is None]
            raise RuntimeError(
                f"spectral_conv backend {name!r} is not available for {device.type} tensors "
                f"({reason}); available: {available}"
            )
        return name
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda":
        reason = backend_status("triton", "cuda")
        if reason is None:
            return "triton"
    else:
        reason = f"no fast path for {device.type} tensors"
    _log_fallback(device.type, reason)
    return "reference"


def _module(backend: str):
    if backend == "triton":
        from nol_fast.ops.spectral_conv import cuda

        return cuda.cuda_forward, cuda.cuda_backward
    if backend == "cpu":
        return cpu.cpu_forward, cpu.cpu_backward
    return reference.reference_forward, reference.reference_backward


@torch.library.custom_op("nol_fast::spectral_conv", mutates_args=())
def _spectral_conv(
    x: torch.Tensor, weight: torch.Tensor, n_modes: list[int], out_grid: list[int], backend: str
) -> tuple[torch.Tensor, torch.Tensor]:
    # x: (batch, in, *in_grid) real; weight: (in, out, *kept, 2) real view of the complex weight
    forward, _ = _module(resolve_backend(backend, x.device))
    index = mode_index(n_modes, x.shape[2:], out_grid)
    with torch.autocast(x.device.type, enabled=False):
        y, x_modes = forward(x, torch.view_as_complex(weight), index, out_grid)
    # y: (batch, out, *out_grid); x_modes: (batch, in, *index.kept, 2)
    return y, torch.view_as_real(x_modes.contiguous())


@_spectral_conv.register_fake
def _(x, weight, n_modes, out_grid, backend):
    kept = mode_index(n_modes, x.shape[2:], out_grid).kept
    return (x.new_empty((x.shape[0], weight.shape[1], *out_grid)),
            x.new_empty((*x.shape[:2], *kept, 2)))


@torch.library.custom_op("nol_fast::spectral_conv_backward", mutates_args=())
def _spectral_conv_backward(
    grad_y: torch.Tensor, x_modes: torch.Tensor, weight: torch.Tensor, n_modes: list[int],
    in_grid: list[int], backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    # grad_y: (batch, out, *out_grid) -> grad_x (batch, in, *in_grid), grad_weight like weight
    _, backward = _module(resolve_backend(backend, grad_y.device))
    index = mode_index(n_modes, in_grid, grad_y.shape[2:])
    with torch.autocast(grad_y.device.type, enabled=False):
        grad_x, grad_w = backward(grad_y.contiguous(), torch.view_as_complex(x_modes),
                                  torch.view_as_complex(weight), index, in_grid)
    return grad_x, torch.view_as_real(grad_w.contiguous())


@_spectral_conv_backward.register_fake
def _(grad_y, x_modes, weight, n_modes, in_grid, backend):
    return grad_y.new_empty((*x_modes.shape[:2], *in_grid)), torch.empty_like(weight)


def _setup_context(ctx, inputs, output) -> None:
    x, weight, n_modes, _, backend = inputs
    ctx.save_for_backward(output[1], weight)
    ctx.mark_non_differentiable(output[1])
    ctx.n_modes, ctx.in_grid, ctx.backend = n_modes, list(x.shape[2:]), backend


def _backward(ctx, grad_y, _grad_x_modes):
    x_modes, weight = ctx.saved_tensors
    grad_x, grad_w = _spectral_conv_backward(grad_y, x_modes, weight, ctx.n_modes, ctx.in_grid,
                                             ctx.backend)
    return grad_x, grad_w, None, None, None


_spectral_conv.register_autograd(_backward, setup_context=_setup_context)


def spectral_conv(
    x: torch.Tensor, weight: torch.Tensor, n_modes: Sequence[int],
    output_shape: Sequence[int] | None = None, backend: str | None = None,
) -> torch.Tensor:
    """Spectral convolution ``irfftn(W * rfftn(x))`` on the kept modes, without bias.

    Parameters
    ----------
    x : Tensor
        Real input ``(batch, in_channels, *grid)``, 1 to 3 grid dims.
    weight : Tensor
        Complex weight ``(in_channels, out_channels, *n_modes[:-1], n_modes[-1] // 2 + 1)``,
        FFT order along the non-last dims (see :mod:`~nol_fast.ops.spectral_conv.modes`).
    n_modes : sequence of int
        Modes kept per grid dimension.
    output_shape : sequence of int, optional
        Output grid (default: the input grid). The kept modes are zero-padded into (or
        truncated to) its spectrum; with ``norm='forward'`` amplitudes match across grids.
    backend : str, optional
        ``'reference'``, ``'cpu'``, ``'triton'`` or ``None``/``'auto'`` (see the module
        docstring for the selection order).

    Returns
    -------
    Tensor
        ``(batch, out_channels, *output_shape)``. Float16/bfloat16 inputs and inputs under
        autocast are computed in float32 and returned in the autocast dtype (or the input
        dtype without autocast); float64 stays float64.

    Examples
    --------
    >>> w = torch.randn(3, 4, 8, 5, dtype=torch.cfloat)
    >>> spectral_conv(torch.randn(2, 3, 32, 32), w, (8, 8), output_shape=(64, 64)).shape
    torch.Size([2, 4, 64, 64])
    """
    # x: (batch, in_channels, *grid)
    check_backend_name(backend)
    device_type = x.device.type
    autocast_on = torch.is_autocast_enabled(device_type)
    out_dtype = torch.get_autocast_dtype(device_type) if autocast_on else x.dtype
    compute_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    weight_dtype = torch.complex128 if compute_dtype == torch.float64 else torch.complex64
    out_grid = list(x.shape[2:] if output_shape is None else output_shape)
    y, _ = _spectral_conv(x.to(compute_dtype), torch.view_as_real(weight.to(weight_dtype)),
                          list(n_modes), out_grid, backend or "auto")
    return y.to(out_dtype)
