"""Training: the Trainer, its configuration, callbacks, optimizers and losses."""

from typing import Any

from nol_fast.training.config import TrainingConfig
from nol_fast.training.trainer import NonFiniteLossError, Trainer

__all__ = ["DistributedTrainer", "NonFiniteLossError", "Trainer", "TrainingConfig"]


def __getattr__(name: str) -> Any:
    """``DistributedTrainer`` on first use: its module imports ``nol_fast.distributed``, whose
    modules import this package's, and ``torch.distributed``'s checkpointing and FSDP modules,
    which one-process training does not need."""
    if name == "DistributedTrainer":
        from nol_fast.training.distributed import DistributedTrainer

        return DistributedTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
