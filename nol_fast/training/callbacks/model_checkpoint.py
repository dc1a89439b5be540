"""ModelCheckpoint: save the model (or a full training checkpoint) during training."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nol_fast.checks import as_int
from nol_fast.training.callbacks.base import MonitorCallback

if TYPE_CHECKING:
    from nol_fast.training.trainer import Trainer

logger = logging.getLogger(__name__)


class ModelCheckpoint(MonitorCallback):
    """Save checkpoints at the end of epochs.

    Parameters
    ----------
    filepath
        Where to save. It is formatted with ``epoch`` (1-based) and the epoch's logged metrics,
        for example ``'ckpt/model_{epoch:02d}_{val_loss:.4f}.pt'``. A key that the run does not
        log is an error that lists the keys it does log.
    monitor, mode
        Metric that decides what is "best", and whether smaller (``'min'``) or larger is better.
    save_best_only
        Save only when ``monitor`` improves on the best value so far.
    save_weights_only
        Save a plain state dict of the model (``Trainer.save_weights``); otherwise a full
        checkpoint that ``Trainer.load_checkpoint`` reads (model, optimizer, scheduler,
        history, RNG, ...).
    period
        Consider saving at the end of every ``period``-th epoch only. With ``save_best_only``
        the value is compared at those epochs alone: an epoch that improves between them is
        not saved (Keras's ``period``).

    Every write is atomic: a crash mid-write leaves the previous file intact. An instance reused
    for a new run starts afresh (no best value, a new period); one that continues its run keeps
    both. Under a ``DistributedTrainer`` the callback runs on every rank, which all take the
    same decisions, and writes through the trainer: global rank 0 writes the file (every rank
    writes its shard of a sharded checkpoint).

    Examples
    --------
    >>> checkpoint = ModelCheckpoint(
    ...     filepath='checkpoints/model_epoch_{epoch:02d}_loss_{val_loss:.4f}.pt',
    ...     monitor='val_loss', save_best_only=True)
    """

    def __init__(
        self,
        filepath: str,
        monitor: str = "val_loss",
        mode: str = "min",
        save_best_only: bool = False,
        save_weights_only: bool = False,
        period: int = 1,
    ):
        super().__init__(monitor=monitor, mode=mode)
        self.filepath = str(filepath)
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.period = as_int(period, "period", minimum=1)
        self.reset_state()

    def reset_state(self) -> None:
        super().reset_state()
        self.epochs_since_last_save = 0
        self.last_saved: str | None = None

    def format_path(self, epoch: int, logs: dict[str, float]) -> str:
        """The file name for a 0-based ``epoch`` with the given logs."""
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as err:
            raise KeyError(
                f"ModelCheckpoint filepath {self.filepath!r} uses {{{err.args[0]}}}, which is "
                f"not logged; available keys: epoch, {', '.join(sorted(logs))}"
            ) from None

    def on_epoch_end(self, trainer, epoch, train_losses, val_losses) -> None:
        self.epochs_since_last_save += 1
        if self.epochs_since_last_save < self.period:
            return
        # Every period boundary starts a new period, whether or not it saves (Keras's rule).
        self.epochs_since_last_save = 0
        if self.save_best_only:
            value = self.current_value(trainer)
            if value is None or not self.is_improvement(value):
                return
            logger.debug("%s improved from %.6g to %.6g", self.monitor, self.best, value)
            self.best = value
        self._save(trainer, self.format_path(epoch, trainer.logs))

    def _save(self, trainer: Trainer, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if self.save_weights_only:
            trainer.save_weights(path)
        else:
            trainer.save_checkpoint(path)
        self.last_saved = path
        logger.debug("saved checkpoint %s", path)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "epochs_since_last_save": self.epochs_since_last_save,
            "last_saved": self.last_saved,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.epochs_since_last_save = state["epochs_since_last_save"]
        self.last_saved = state["last_saved"]
