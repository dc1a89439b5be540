"""EarlyStopping: stop training once a monitored metric stops improving."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from nol_fast.checks import as_int
from nol_fast.training.callbacks.base import MonitorCallback

if TYPE_CHECKING:
    from nol_fast.training.trainer import Trainer

logger = logging.getLogger(__name__)


class EarlyStopping(MonitorCallback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs in a row.

    An epoch improves when it beats the best value so far by more than ``min_delta``. Epochs
    that do not produce the metric (no validation that epoch) are not counted. With a constant
    loss, ``1 + patience`` epochs run. An instance reused for a new run starts afresh; one that
    continues its run (a resumed checkpoint, or the same trainer training on) keeps its best
    value and its count of epochs without improvement.

    Parameters
    ----------
    patience
        Epochs without improvement after which training stops.
    min_delta
        Minimum change that counts as an improvement.
    monitor
        Metric to watch, such as ``'val_loss'``.
    mode
        ``'min'`` or ``'max'``.
    restore_best_weights
        At the end of training (early stop or not), load the weights of the best epoch.

    Examples
    --------
    >>> early_stopping = EarlyStopping(patience=10, min_delta=1e-4, monitor='val_loss')
    """

    def __init__(
        self,
        patience: int = 10,
        min_delta: float = 0.0,
        monitor: str = "val_loss",
        mode: str = "min",
        restore_best_weights: bool = False,
    ):
        super().__init__(monitor=monitor, mode=mode, min_delta=min_delta)
        self.patience = as_int(patience, "patience", minimum=0)
        self.restore_best_weights = restore_best_weights
        self.reset_state()

    def reset_state(self) -> None:
        super().reset_state()
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        self.stopped_epoch = None

    def on_epoch_end(self, trainer, epoch, train_losses, val_losses) -> None:
        value = self.current_value(trainer)
        if value is None:
            return
        if self.is_improvement(value):
            self.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = {
                    k: v.detach().clone() for k, v in trainer.model_state_dict().items()
                }
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop_training = True
            logger.info(
                "early stopping at epoch %d: %s has not improved on %.6g (epoch %s) for %d "
                "epochs", epoch + 1, self.monitor, self.best,
                None if self.best_epoch is None else self.best_epoch + 1, self.wait,
            )

    def on_train_end(self, trainer: Trainer) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            trainer.load_model_state_dict(self.best_weights)
            logger.info("restored the weights of epoch %d", self.best_epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "wait": self.wait,
            "best_epoch": self.best_epoch,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.wait = state["wait"]
        self.best_epoch = state["best_epoch"]
        self.best_weights = state["best_weights"]
