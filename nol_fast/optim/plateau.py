"""ReduceLROnPlateau with a linear warm-up and the scheduler protocol of the training loop.

A plateau scheduler decides once per validation, but a warm-up has to advance with every
optimizer step. :class:`PlateauScheduler` keeps the two apart: ``step()`` without a metric is
one optimizer step (it moves the warm-up on, and does nothing once warm-up is over), and
``step(metric)`` is one plateau decision. Decisions start after warm-up, from the full lr.
"""

from __future__ import annotations

from typing import Any, Literal, SupportsFloat

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from nol_fast.checks import as_int
from nol_fast.optim.schedulers import set_group_lr


class PlateauScheduler(ReduceLROnPlateau):
    """``ReduceLROnPlateau`` after an optional linear warm-up.

    During warm-up the lr of optimizer step ``t`` is ``base_lr * (t + 1) / warmup_steps``, as in
    :class:`~nol_fast.optim.WarmupScheduler`; ``base_lr`` is each group's lr when the scheduler
    was created. Then the lr is ``base_lr`` until the metric plateaus: it is multiplied by
    ``factor`` once the metric has not improved for more than ``patience`` decisions (torch's
    rule). Metrics passed while warming up are ignored.

    ``interval`` is ``'epoch'`` (decisions come once per validation) and ``needs_horizon`` is
    False, as the training loop expects of its schedulers.

    Parameters
    ----------
    optimizer
        The optimizer whose groups' ``lr`` the scheduler sets.
    warmup_steps
        Optimizer steps of linear warm-up; 0 for none.
    mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps
        As in ``torch.optim.lr_scheduler.ReduceLROnPlateau``.

    Examples
    --------
    >>> import torch
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> scheduler = PlateauScheduler(optimizer, warmup_steps=2, factor=0.5, patience=0)
    >>> optimizer.param_groups[0]["lr"]  # first warm-up step
    0.05
    >>> scheduler.step()  # after each optimizer step
    >>> scheduler.step()
    >>> optimizer.param_groups[0]["lr"]
    0.1
    >>> scheduler.step(1.0)  # after each validation: best so far
    >>> scheduler.step(1.0)  # no improvement for more than `patience` validations
    >>> optimizer.param_groups[0]["lr"]
    0.05
    """

    interval = "epoch"
    needs_horizon = False

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 0,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: list[float] | float = 0,
        eps: float = 1e-8,
    ) -> None:
        self.warmup_steps = as_int(warmup_steps, "warmup_steps", minimum=0)
        super().__init__(
            optimizer, mode=mode, factor=factor, patience=patience, threshold=threshold,
            threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr, eps=eps,
        )
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.warmup_step_count = 0  # optimizer steps taken so far, up to warmup_steps
        if self.warmup_steps:
            self._set_warmup_lrs()

    @property
    def warming_up(self) -> bool:
        """Whether the warm-up is still running (the loop then steps once per optimizer step)."""
        return self.warmup_step_count < self.warmup_steps

    def step(self, metrics: SupportsFloat | None = None, epoch: Any = None) -> None:  # type: ignore[override]
        """Without ``metrics``: one optimizer step of warm-up. With it: one plateau decision."""
        if metrics is None:
            if self.warming_up:
                self.warmup_step_count += 1
                self._set_warmup_lrs()
            return
        if not self.warming_up:
            super().step(metrics, epoch)

    def _set_warmup_lrs(self) -> None:
        fraction = min(self.warmup_step_count + 1, self.warmup_steps) / self.warmup_steps
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            set_group_lr(group, base_lr * fraction)
        self._last_lr = [float(group["lr"]) for group in self.optimizer.param_groups]
