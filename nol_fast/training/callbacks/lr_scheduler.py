"""LearningRateScheduler: step a PyTorch scheduler from a callback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch.optim.lr_scheduler import ReduceLROnPlateau

from nol_fast.training.callbacks.base import TrainingCallback
from nol_fast.training.scheduling import SchedulerStepper

if TYPE_CHECKING:
    from nol_fast.training.trainer import Trainer


class LearningRateScheduler(TrainingCallback):
    """Step ``scheduler`` every epoch or after every optimizer step.

    ``ReduceLROnPlateau`` is stepped per epoch with the ``monitor`` metric (epochs without
    validation are skipped; a :class:`~nol_fast.optim.PlateauScheduler` also warms up per
    optimizer step). A scheduler built without its run-length option (``create_scheduler(opt,
    'cosine')`` without ``T_max``) gets it when training starts: ``epochs × optimizer steps per
    epoch`` for ``step_on='batch'``, ``epochs`` for ``'epoch'``. If the same scheduler is also
    handed to the Trainer, the Trainer leaves the stepping to this callback.

    Parameters
    ----------
    scheduler
        A ``torch.optim.lr_scheduler`` scheduler, or one from ``create_scheduler``.
    step_on
        ``'epoch'`` or ``'batch'`` (after every optimizer step).
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
        if step_on == "batch" and isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError("ReduceLROnPlateau steps on a metric, so step_on must be 'epoch'")
        self.scheduler = scheduler
        self.step_on = step_on
        self.monitor = monitor
        self.stepper = SchedulerStepper(
            scheduler, "step" if step_on == "batch" else "epoch", monitor
        )

    def overrides(self, hook: str) -> bool:
        # Per-batch dispatch is needed only when stepping per optimizer step.
        if hook == "on_batch_end":
            return self.stepper.wants_optimizer_steps
        return super().overrides(hook)

    def on_train_begin(self, trainer: Trainer) -> None:
        self.stepper.fill_horizon(trainer.params["epochs"], lambda: trainer.steps_per_epoch)

    def on_batch_end(self, trainer, batch_idx, batch_metrics) -> None:
        if trainer.took_optimizer_step:
            self.stepper.after_optimizer_step()

    def on_epoch_end(self, trainer, epoch, train_losses, val_losses) -> None:
        self.stepper.after_epoch(trainer.logs)

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
