"""Evaluation of a model over a data loader: mean loss, relative L2 error, predictions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from nol_fast.training.batches import to_device, unpack_batch
from nol_fast.training.metrics import relative_l2

#: ``forward_loss(x, y) -> (prediction, loss, loss components)``
ForwardLoss = Callable[[torch.Tensor, torch.Tensor],
                       tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]


def evaluate_loader(
    forward_loss: ForwardLoss,
    model: nn.Module,
    data_loader: Iterable,
    device: torch.device,
    return_predictions: bool = False,
    check_input: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, Any]:
    """Sample-weighted means of the loss, its components and the relative L2 error.

    The model runs in eval mode without gradients, and its mode is restored afterwards. Sums
    stay on the device in float64 and are read once at the end (without
    ``return_predictions``, which copies every prediction to the host).

    Parameters
    ----------
    check_input
        Called with the first batch's inputs (shape checks before the model runs).

    Returns
    -------
    ``{'loss', 'rel_l2', <components>, 'n_samples'}`` and, with ``return_predictions``,
    ``'predictions'``: every prediction as one CPU tensor, in loader order.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    rel_sum = torch.zeros((), device=device, dtype=torch.float64)
    component_sums: dict[str, torch.Tensor] = {}
    predictions = []
    n_samples = 0
    try:
        with torch.no_grad():
            for batch in data_loader:
                x, y = (to_device(t, device) for t in unpack_batch(batch))
                if n_samples == 0 and check_input is not None:
                    check_input(x)
                pred, loss, components = forward_loss(x, y)
                size = x.shape[0]
                loss_sum += loss.double() * size
                rel_sum += relative_l2(pred, y).double().sum()
                for name, value in components.items():
                    component_sums[name] = component_sums.get(name, 0.0) + value.double() * size
                if return_predictions:
                    predictions.append(pred.float().cpu())
                n_samples += size
    finally:
        model.train(was_training)
    if n_samples == 0:
        raise ValueError("the evaluation loader yielded no batches")
    names = list(component_sums)
    samples = torch.full((), n_samples, dtype=torch.float64, device=device)
    sums = torch.stack([loss_sum, rel_sum, samples, *(component_sums[n] for n in names)])
    loss_total, rel_total, n_total, *component_totals = sums.tolist()  # the one host read
    result: dict[str, Any] = {"loss": loss_total / n_total, "rel_l2": rel_total / n_total}
    result.update({k: v / n_total for k, v in zip(names, component_totals, strict=True)})
    result["n_samples"] = int(n_total)
    if return_predictions:
        result["predictions"] = torch.cat(predictions)
    return result
