"""Evaluation split across ranks: each rank evaluates a block of the samples; all get the means.

The means are weighted by each rank's sample count, so they equal the means over the whole
loader on one process (up to rounding). Under strategies whose forward passes are collectives
(FSDP2 gathers parameters in each), a rank with fewer batches runs extra forward passes on its
first batch, whose results are dropped, so that every rank takes part in as many.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nol_fast.distributed import collectives
from nol_fast.distributed.sampling import sharded_eval_loader
from nol_fast.training.batches import to_device, unpack_batch
from nol_fast.training.evaluation import ForwardLoss, evaluate_loader


def evaluate_sharded(
    forward_loss: ForwardLoss,
    model: nn.Module,
    data_loader: Iterable,
    device: torch.device,
    group: Any,
    lockstep: bool,
    return_predictions: bool = False,
) -> dict[str, Any]:
    """:func:`~nol_fast.training.evaluation.evaluate_loader` over this rank's block of
    ``data_loader``, combined over all ranks (every rank returns the same result).

    A loader that cannot be split (see
    :func:`~nol_fast.distributed.sampling.sharded_eval_loader`) is evaluated whole on every
    rank. With ``return_predictions``, every rank gets all predictions, in loader order.
    """
    shard = sharded_eval_loader(data_loader, dist.get_world_size(), dist.get_rank())
    if shard is None:
        return evaluate_loader(forward_loss, model, data_loader, device, return_predictions)
    # Known before any forward pass: a rank waiting in this gather could not join the
    # collectives of another rank's forward pass.
    most = max(collectives.gather(len(shard), group)) if lockstep else len(shard)
    result = evaluate_loader(forward_loss, model, shard, device, return_predictions)
    _idle_forwards(forward_loss, model, shard, device, most - len(shard))
    n_samples = result.pop("n_samples")
    predictions = result.pop("predictions", None)
    means, total = collectives.weighted_means(result, n_samples, group)
    means["n_samples"] = int(total)
    if return_predictions:
        means["predictions"] = torch.cat(collectives.gather(predictions, group))
    return means


def _idle_forwards(forward_loss: ForwardLoss, model: nn.Module, loader: Iterable,
                   device: torch.device, count: int) -> None:
    """``count`` forward passes on the loader's first batch, results dropped."""
    if count <= 0:
        return
    x, y = (to_device(t, device) for t in unpack_batch(next(iter(loader))))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(count):
                forward_loss(x, y)
    finally:
        model.train(was_training)
