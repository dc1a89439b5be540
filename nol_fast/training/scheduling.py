"""How the training loop steps a learning-rate scheduler.

The Trainer steps the scheduler it was given, and a
:class:`~nol_fast.training.callbacks.LearningRateScheduler` steps its own; both go through a
:class:`SchedulerStepper`, so the two agree on:

- the unit: ``'step'`` schedulers are stepped after every optimizer step, ``'epoch'`` ones once
  per epoch;
- the horizon: a scheduler built without its run-length option (``needs_horizon``) gets
  ``epochs × optimizer steps per epoch``, or ``epochs`` for the epoch unit, before training;
- plateau schedulers: stepped once per epoch with the monitored metric (skipping epochs that do
  not produce it), and, while a :class:`~nol_fast.optim.PlateauScheduler` warms up, after every
  optimizer step too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from torch.optim.lr_scheduler import ReduceLROnPlateau

logger = logging.getLogger(__name__)


def trainer_interval(scheduler: Any, configured: str) -> str:
    """The unit in which the Trainer steps ``scheduler``.

    Plateau schedulers step per epoch; otherwise ``configured`` (``config.scheduler_interval``)
    unless it is ``'auto'``, then the scheduler's own ``interval`` (schedulers from
    ``create_scheduler``), else ``'epoch'``.
    """
    if isinstance(scheduler, ReduceLROnPlateau):
        return "epoch"
    if configured != "auto":
        return configured
    return getattr(scheduler, "interval", "epoch")


class SchedulerStepper:
    """Steps one learning-rate scheduler at the points of the training loop.

    Parameters
    ----------
    scheduler
        A ``torch.optim.lr_scheduler`` scheduler, or one from ``create_scheduler``.
    interval
        ``'step'`` (after every optimizer step) or ``'epoch'``. Plateau schedulers take
        ``'epoch'`` only.
    monitor
        The metric a plateau scheduler is stepped with.

    Examples
    --------
    >>> import torch
    >>> from nol_fast.training.optimizers import create_scheduler
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> stepper = SchedulerStepper(create_scheduler(optimizer, "linear"), "step", "val_loss")
    >>> stepper.fill_horizon(epochs=2, steps_per_epoch=lambda: 5)
    >>> stepper.scheduler.options["T_max"]
    10
    """

    def __init__(self, scheduler: Any, interval: str, monitor: str):
        self.scheduler = scheduler
        self.interval = interval
        self.monitor = monitor
        self.is_plateau = isinstance(scheduler, ReduceLROnPlateau)
        if self.is_plateau and interval != "epoch":
            raise ValueError(
                f"a plateau scheduler decides once per epoch, with the monitored metric; got "
                f"interval={interval!r}"
            )

    @property
    def wants_optimizer_steps(self) -> bool:
        """Whether :meth:`after_optimizer_step` has anything to do."""
        if self.is_plateau:
            return getattr(self.scheduler, "warmup_steps", 0) > 0
        return self.interval == "step"

    def fill_horizon(self, epochs: int, steps_per_epoch: Callable[[], int]) -> None:
        """Give a scheduler that ``needs_horizon`` the length of a run of ``epochs`` epochs.

        ``steps_per_epoch`` is called only when the unit is the optimizer step.
        """
        if not getattr(self.scheduler, "needs_horizon", False):
            return
        total = epochs * (steps_per_epoch() if self.interval == "step" else 1)
        self.scheduler.set_horizon(total)
        logger.info("scheduler horizon set to %d %ss (epochs=%d)", total, self.interval, epochs)

    def after_optimizer_step(self) -> None:
        """Step a per-step scheduler, or a plateau scheduler's warm-up."""
        if self.is_plateau:
            if getattr(self.scheduler, "warming_up", False):
                self.scheduler.step()
        elif self.interval == "step":
            self.scheduler.step()

    def after_epoch(self, logs: Mapping[str, float]) -> None:
        """Step a per-epoch scheduler; a plateau scheduler with the epoch's monitored metric.

        A metric the run does not log is a ``KeyError`` listing the logged ones; an epoch where
        it is NaN (no validation that epoch) is skipped.
        """
        if self.is_plateau:
            if self.monitor not in logs:
                raise KeyError(
                    f"the plateau scheduler monitors '{self.monitor}', which is not logged; "
                    f"logged metrics: {', '.join(sorted(logs))}"
                )
            value = logs[self.monitor]
            if not math.isnan(value):
                self.scheduler.step(value)
        elif self.interval == "epoch":
            self.scheduler.step()
