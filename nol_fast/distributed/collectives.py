"""Small host-side agreements between ranks: flags, counts and metric means.

They run on a separate gloo group of CPU tensors (:func:`new_control_group`): the decisions
they carry (stop now, skip this step, the epoch's mean loss) never wait on a GPU stream, and
their messages never queue behind the model's gradient collectives. Values gathered from every
rank are combined in rank order, so each rank computes the same bits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist


def new_control_group() -> Any:
    """A gloo group of all ranks for host-side agreements.

    Creating it is a collective: every rank calls this at the same point.
    """
    return dist.new_group(backend="gloo")


def any_rank(flag: bool, group: Any) -> bool:
    """True on every rank when ``flag`` is True on some rank."""
    value = torch.tensor([int(bool(flag))], dtype=torch.int64)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=group)
    return bool(value.item())


def all_ranks(flag: bool, group: Any) -> bool:
    """True on every rank when ``flag`` is True on all ranks."""
    value = torch.tensor([int(bool(flag))], dtype=torch.int64)
    dist.all_reduce(value, op=dist.ReduceOp.MIN, group=group)
    return bool(value.item())


def gather(obj: Any, group: Any) -> list[Any]:
    """``obj`` of every rank (picklable), in rank order."""
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, obj, group=group)
    return gathered


def weighted_means(
    metrics: Mapping[str, float], weight: float, group: Any
) -> tuple[dict[str, float], float]:
    """Means of every rank's ``metrics`` weighted by each rank's ``weight``, and the total weight.

    A rank of weight 0 contributes nothing; a metric no rank with weight logs is NaN.

    Examples
    --------
    On two ranks with ``{'loss': 1.0}``, weight 3 and ``{'loss': 2.0}``, weight 1, every rank
    gets ``({'loss': 1.25}, 4.0)``.
    """
    gathered = gather((dict(metrics), float(weight)), group)
    total = sum(w for _, w in gathered)
    names = list(dict.fromkeys(name for values, _ in gathered for name in values))
    result = {}
    for name in names:
        weighted = [(values[name], w) for values, w in gathered if name in values and w > 0]
        part = sum(w for _, w in weighted)
        result[name] = sum(v * w for v, w in weighted) / part if part > 0 else float("nan")
    return result, total
