"""Parallelism strategies (DDP, FSDP, HSDP) for DistributedTrainer.

The strategies arrive with the distributed-training release. ``create_parallelism_strategy``
exists now with its final signature so code written against the Training API imports; calling
it raises a ``NotImplementedError`` naming that work.
"""

from __future__ import annotations

from typing import Any

STRATEGIES = ("ddp", "fsdp", "hsdp")


class ParallelismStrategy:
    """How a model is replicated or sharded across processes (base class)."""

    name = "base"


def create_parallelism_strategy(config: Any, world_size: int) -> ParallelismStrategy:
    """Build the strategy named in ``config`` (the ``parallelism`` section) for ``world_size``.

    Raises
    ------
    NotImplementedError
        Always in this release: DDP, FSDP2 and HSDP strategies (``strategy:`` one of
        ddp, fsdp, hsdp) arrive with the distributed-training release.
    """
    raise NotImplementedError(
        f"parallelism strategies ({', '.join(STRATEGIES)}) are not available in this release; "
        f"they arrive with the distributed-training release (world_size={world_size} was "
        f"requested). Train on one process with nol_fast.training.Trainer meanwhile."
    )
