"""DistributedTrainer: the Trainer across processes (torchrun, NCCL/gloo).

Multi-process training (DDP, FSDP2 and HSDP strategies, distributed samplers, all-reduced
metrics and sharded checkpoints) is planned for the distributed-training release. The class and
its signature exist now so code written against the Training API imports; constructing it
raises a ``NotImplementedError`` that says what to use meanwhile.
"""

from __future__ import annotations

from typing import Any

from nol_fast.training.trainer import Trainer

NOT_YET = (
    "DistributedTrainer is not available in this release: multi-process training (DDP, FSDP2, "
    "HSDP under torchrun) arrives with the distributed-training release. Train on one process "
    "with nol_fast.training.Trainer meanwhile."
)


class DistributedTrainer(Trainer):
    """Trainer for multiple processes and nodes.

    Parameters
    ----------
    world_size, rank, local_rank
        Total processes, this process's rank, and its rank within the node.
    backend
        ``'nccl'`` or ``'gloo'``.
    init_method
        Process-group initialisation method (``'env://'`` under torchrun).
    strategy
        A :class:`~nol_fast.distributed.strategies.ParallelismStrategy`.

    All other parameters are those of :class:`~nol_fast.training.Trainer`.
    """

    def __init__(
        self,
        model: Any,
        train_loader: Any,
        val_loader: Any = None,
        optimizer: Any = None,
        scheduler: Any = None,
        loss_fn: Any = None,
        device: Any = None,
        config: Any = None,
        world_size: int = 1,
        rank: int = 0,
        local_rank: int = 0,
        backend: str = "nccl",
        init_method: str = "env://",
        strategy: Any = None,
    ):
        raise NotImplementedError(NOT_YET)
