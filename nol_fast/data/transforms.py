"""Reshaping of PDE samples: subsampling to a coarser grid and time windows of trajectories."""

from __future__ import annotations

import torch


def subsample_stride(size: int, resolution: int) -> int:
    """The stride that takes ``size`` grid points to ``resolution`` of them.

    Periodic grids (points ``j / n``) subsample by ``size / resolution``; grids that include
    both end points (Darcy's nodes ``j / (n - 1)``) by ``(size - 1) / (resolution - 1)``,
    which keeps the boundary. ``ValueError`` when neither divides evenly.

    Examples
    --------
    >>> subsample_stride(256, 64), subsample_stride(421, 85), subsample_stride(64, 64)
    (4, 5, 1)
    """
    if resolution == size:
        return 1
    if 1 <= resolution < size:
        if size % resolution == 0:
            return size // resolution
        if resolution > 1 and (size - 1) % (resolution - 1) == 0:
            return (size - 1) // (resolution - 1)
    raise ValueError(f"cannot subsample a grid of {size} points to {resolution}: the resolution "
                     f"must divide {size} (periodic grids) or {size - 1} must be a multiple of "
                     f"resolution - 1 (grids with both end points)")


def subsample(tensor: torch.Tensor, resolution: int | None, grid_dims: int) -> torch.Tensor:
    """Subsample the last ``grid_dims`` dims of ``tensor`` to ``resolution`` points each.

    ``None`` keeps the grid. Every grid dim must allow an even stride (see
    :func:`subsample_stride`).
    """
    if resolution is None:
        return tensor
    index = [slice(None)] * (tensor.dim() - grid_dims)
    for size in tensor.shape[tensor.dim() - grid_dims:]:
        index.append(slice(None, None, subsample_stride(size, resolution)))
    return tensor[tuple(index)]


def time_windows(
    trajectories: torch.Tensor, history: int, horizon: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``u(t_0 .. t_{h-1})`` and targets ``u(t_h .. t_{h+k-1})`` of each trajectory.

    ``trajectories`` has shape ``(n, n_times, *grid)``; the time steps become channels:
    ``x`` is ``(n, history, *grid)`` and ``y`` ``(n, horizon, *grid)``, from the start of
    each trajectory.

    Examples
    --------
    >>> x, y = time_windows(torch.arange(12.0).view(1, 6, 2), history=2, horizon=3)
    >>> x[0, :, 0].tolist(), y[0, :, 0].tolist()
    ([0.0, 2.0], [4.0, 6.0, 8.0])
    """
    n_times = trajectories.shape[1]
    if history < 1 or horizon < 1 or history + horizon > n_times:
        raise ValueError(f"history ({history}) + horizon ({horizon}) must be positive and at "
                         f"most the {n_times} time steps of the trajectories "
                         f"(shape {tuple(trajectories.shape)})")
    return trajectories[:, :history], trajectories[:, history:history + horizon]
