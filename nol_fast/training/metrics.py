"""Error metrics for operator learning."""

from __future__ import annotations

import torch


def relative_l2(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-sample relative L2 error ``||pred - target||_2 / ||target||_2``.

    Parameters
    ----------
    pred, target
        Tensors of shape ``(batch, ...)``; every non-batch dimension is part of the norm.
    eps
        Guards against division by zero for an all-zero target.

    Returns
    -------
    Tensor of shape ``(batch,)`` in float32 or wider.

    Examples
    --------
    >>> relative_l2(torch.ones(2, 3) * 1.1, torch.ones(2, 3))
    tensor([0.1000, 0.1000])
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} does not match target {tuple(target.shape)}"
        )
    # diff, target: (batch, n) in at least float32 so bf16 outputs are measured accurately
    dtype = torch.promote_types(pred.dtype, torch.float32)
    diff = (pred.to(dtype) - target.to(dtype)).flatten(1)
    ref = target.to(dtype).flatten(1)
    return diff.norm(dim=1) / ref.norm(dim=1).clamp_min(eps)
