"""Training: the Trainer, its configuration, callbacks, optimizers and losses."""

from nol_fast.training.config import TrainingConfig
from nol_fast.training.distributed import DistributedTrainer
from nol_fast.training.trainer import NonFiniteLossError, Trainer

__all__ = ["DistributedTrainer", "NonFiniteLossError", "Trainer", "TrainingConfig"]
