"""LearningRateScheduler: step a PyTorch scheduler from a callback."""

from __future__ import annotations

from typing import Any

import torch

from nol_fast.training.callbacks.base import TrainingCallback


class LearningRateScheduler(TrainingCallback):
    """Step ``scheduler`` every epoch or every training batch.

    ``ReduceLROnPlateau`` is stepped per epoch with the ``monitor`` metric (``'val_loss'`` by
    default; epochs without validation are skipped). If the same scheduler is also handed to the
    Trainer, the Trainer leaves the stepping to this callback.

    Parameters
    ----------
    scheduler
        A ``torch.optim.lr_scheduler`` scheduler.
    step_on
        ``'epoch'`` or ``'batch'``.
    monitor
        Metric for plateau schedulers.

    Examples
    --------
    >>> import torch
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
    >>> lr_callback = LearningRateScheduler(sched, step_on='epoch')
    """

    def __init__(self, scheduler: Any, step_on: str = "epoch", monitor: str = "val_loss"):
        if step_on not in ("epoch", "batch"):
            raise ValueError(f"step_on must be 'epoch' or 'batch', got {step_on!r}")
        self.scheduler = scheduler
        self.step_on = step_on
        self.monitor = monitor
        self.is_plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if self.is_plateau and step_on == "batch":
            raise ValueError("ReduceLROnPlateau steps on a metric, so step_on must be 'epoch'")

    def overrides(self, hook: str) -> bool:
        # Per-batch dispatch is needed only when stepping per batch.
        if hook == "on_batch_end":
            return self.step_on == "batch"
        return super().overrides(hook)

    def on_batch_end(self, trainer, batch_idx, batch_metrics) -> None:
        if self.step_on == "batch" and trainer.took_optimizer_step:
            self.scheduler.step()

    def on_epoch_end(self, trainer, epoch, train_losses, val_losses) -> None:
        if self.step_on != "epoch":
            return
        if self.is_plateau:
            value = trainer.logs.get(self.monitor, float("nan"))
            if value == value:  # not NaN: this epoch produced the metric
                self.scheduler.step(value)
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
