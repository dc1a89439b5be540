"""CUDA conservation reduction: the one-pass Triton kernels of ``nol_fast.ops.triton.conservation``.

Imported on first use, so that ``nol_fast`` works without Triton. The kernels compute in
float32; float64 inputs run on the reference path. The tests run this composition on CPU
tensors under the Triton interpreter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nol_fast.ops.conservation.reference import reference_sums, reference_sums_backward


def _kernels():
    from nol_fast.ops.triton import conservation

    return conservation


def _flags(weighted: Sequence[bool], device: torch.device) -> Tensor:
    return torch.tensor([int(w) for w in weighted], dtype=torch.int32).to(device)


def cuda_sums(
    u: Tensor, density: int, weighted: Sequence[bool], spacing: Sequence[float]
) -> Tensor:
    """The sums of :func:`~nol_fast.ops.conservation.reference.reference_sums`, one launch."""
    if u.dtype == torch.float64:
        return reference_sums(u, density, weighted, spacing)
    sums = _kernels().conservation_sums(u, density, _flags(weighted, u.device), spacing)
    return sums.to(u.dtype)


def cuda_sums_backward(
    grad_sums: Tensor, u: Tensor, density: int, weighted: Sequence[bool],
    spacing: Sequence[float],
) -> Tensor:
    """``grad_u`` of :func:`cuda_sums`, one launch."""
    if u.dtype == torch.float64:
        return reference_sums_backward(grad_sums, u, density, weighted, spacing)
    grad_u = _kernels().conservation_sums_backward(grad_sums, u, density,
                                                   _flags(weighted, u.device), spacing)
    return grad_u.to(u.dtype)
