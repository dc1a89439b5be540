"""TensorBoardLogger: write scalars to TensorBoard event files."""

from __future__ import annotations

import math
from typing import Any

from nol_fast.checks import as_int
from nol_fast.training.callbacks.base import TrainingCallback


class TensorBoardLogger(TrainingCallback):
    """Log epoch metrics and, every ``log_frequency`` batches, the batch loss and lr.

    Epoch scalars are written as ``epoch/<metric>`` at step ``epoch`` (1-based); batch scalars
    as ``batch/loss`` and ``batch/lr`` at the global batch index. Reading the batch loss
    synchronises with the device, which is why it happens only every ``log_frequency`` batches.
    Files are standard TensorBoard event files (``tensorboard --logdir LOG_DIR``).

    Parameters
    ----------
    log_dir
        Directory for the event files.
    log_frequency
        Batches between batch-level scalars; ``0`` disables them.

    Examples
    --------
    >>> tb_logger = TensorBoardLogger(log_dir='runs/experiment_001', log_frequency=100)
    """

    main_process_only = True  # one set of event files per run, written by global rank 0

    def __init__(self, log_dir: str = "runs", log_frequency: int = 100):
        self.log_dir = str(log_dir)
        self.log_frequency = as_int(log_frequency, "log_frequency", minimum=0)
        self.writer: Any = None

    def overrides(self, hook: str) -> bool:
        if hook == "on_batch_end":
            return self.log_frequency > 0
        return super().overrides(hook)

    def on_train_begin(self, trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if self.writer is None:
            self.writer = SummaryWriter(log_dir=self.log_dir)

    def on_batch_end(self, trainer, batch_idx, batch_metrics) -> None:
        step = trainer.global_batch
        if self.log_frequency and step % self.log_frequency == 0:
            self.writer.add_scalar("batch/loss", float(batch_metrics["loss"]), step)
            self.writer.add_scalar("batch/lr", trainer.current_lr(), step)

    def on_epoch_end(self, trainer, epoch, train_losses, val_losses) -> None:
        for name, value in trainer.logs.items():
            if not math.isnan(value):
                self.writer.add_scalar(f"epoch/{name}", value, epoch + 1)
        self.writer.flush()

    def on_train_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
