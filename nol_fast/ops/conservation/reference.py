"""Reference of the fused conservation reduction: the integrals as plain torch reductions.

For a field ``u`` of shape ``(batch, channels, *grid)`` and each ``(batch, channel)`` row, with
``m`` the row's weight (the density channel of the same sample for the rows ``weighted``
marks, else 1) and ``x_k`` the cell-start coordinates ``i_k h_k``:

``sums[..., 0] = Σ m u``, ``sums[..., 1] = Σ m u²``, ``sums[..., 2 + k] = Σ x_k u``.

Written for clarity, it is the oracle of the Triton kernel and the path on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def coordinates(grid: Sequence[int], spacing: Sequence[float], like: Tensor) -> Tensor:
    """Cell-start coordinates ``(n_points, n_dims)`` of ``grid``, row-major."""
    axes = [torch.arange(n, dtype=like.dtype, device=like.device) * h
            for n, h in zip(grid, spacing, strict=True)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(grid))


def weights(u: Tensor, density: int, weighted: Sequence[bool]) -> Tensor:
    """``m``: ``(batch, channels, n_points)``, the density row where ``weighted``, else 1."""
    flat = u.flatten(2)
    if density < 0 or not any(weighted):
        return torch.ones_like(flat)
    mask = torch.tensor(weighted, device=u.device).reshape(1, -1, 1)
    return torch.where(mask, flat[:, density:density + 1], torch.ones_like(flat))


def reference_sums(
    u: Tensor, density: int, weighted: Sequence[bool], spacing: Sequence[float]
) -> Tensor:
    """``(batch, channels, 2 + n_dims)`` sums of the module docstring."""
    flat = u.flatten(2)  # (batch, channels, n_points)
    m = weights(u, density, weighted)
    x = coordinates(u.shape[2:], spacing, u)
    return torch.cat([(m * flat).sum(-1, keepdim=True), (m * flat * flat).sum(-1, keepdim=True),
                      flat @ x], -1)


def reference_sums_backward(
    grad_sums: Tensor, u: Tensor, density: int, weighted: Sequence[bool],
    spacing: Sequence[float],
) -> Tensor:
    """``grad_u`` by autograd through :func:`reference_sums` (``torch.func.vjp``, which records
    inside a custom op, below the dispatcher's autograd step)."""
    _, vjp = torch.func.vjp(lambda u: reference_sums(u, density, weighted, spacing), u)
    return vjp(grad_sums)[0]
