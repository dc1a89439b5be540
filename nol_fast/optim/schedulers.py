"""Learning-rate schedulers with linear warm-up, computed in closed form from the step count.

One class, :class:`WarmupScheduler`, covers every decay schedule the training loop offers
(cosine, cosine with warm restarts, linear, step, exponential, constant). Computing the lr
from the step count, instead of updating it recursively, means that resuming from a checkpoint
or filling in the horizon late (:meth:`WarmupScheduler.set_horizon`) gives exactly the lr an
uninterrupted run would have had, and the state is a handful of plain Python values that a
``torch.load(..., weights_only=True)`` checkpoint can hold.

Schedulers carry the protocol the trainer relies on:

``interval``
    ``'step'`` (stepped after every optimizer step) or ``'epoch'`` (once per epoch); all step
    counts of the scheduler, warm-up and horizon included, are in this unit.
``needs_horizon``
    True when the trainer should fill the horizon ``T_max`` of a cosine, linear or onecycle schedule
    from its run length: the user gave none, or an earlier fill set it.
``set_horizon(total)``
    Fills in ``T_max`` (total steps of the run, warm-up included).

:class:`PlateauScheduler` gives ``ReduceLROnPlateau`` the same attributes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

logger = logging.getLogger(__name__)

INTERVALS = ("step", "epoch")

Options = dict[str, Any]


def _half_cosine(base_lr: float, eta_min: float, t: int, period: int) -> float:
    """Cosine annealing from ``base_lr`` (t = 0) to ``eta_min`` (t = period)."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t / period)) / 2


def _cosine(base_lr: float, t: int, decay_steps: int | None, opts: Options) -> float:
    if decay_steps is None:
        return base_lr
    if t >= decay_steps:
        return opts["eta_min"]
    return _half_cosine(base_lr, opts["eta_min"], t, decay_steps)


def _cosine_restarts(base_lr: float, t: int, decay_steps: int | None, opts: Options) -> float:
    period, t_mult = opts["T_0"], opts["T_mult"]
    if t_mult == 1:
        t %= period
    else:
        while t >= period:
            t -= period
            period *= t_mult
    return _half_cosine(base_lr, opts["eta_min"], t, period)


def _linear(base_lr: float, t: int, decay_steps: int | None, opts: Options) -> float:
    if decay_steps is None:
        return base_lr
    if t >= decay_steps:
        return base_lr * opts["end_factor"]
    return base_lr * (1 + (opts["end_factor"] - 1) * t / decay_steps)


def _step(base_lr: float, t: int, decay_steps: int | None, opts: Options) -> float:
    return base_lr * opts["gamma"] ** (t // opts["step_size"])


def _exponential(base_lr: float, t: int, decay_steps: int | None, opts: Options) -> float:
    return base_lr * opts["gamma"] ** t


def _constant(base_lr: float, t: int, decay_steps: int | None, opts: Options) -> float:
    return base_lr


def _onecycle(base_lr: float, t: int, decay_steps: int | None, opts: Options) -> float:
    """One cycle: cosine up from ``base_lr / div_factor`` to ``base_lr`` over the first
    ``pct_start`` of the horizon, then cosine down to ``base_lr / div_factor /
    final_div_factor`` at its last step, where it stays."""
    if decay_steps is None:
        return base_lr
    start = base_lr / opts["div_factor"]
    final = start / opts["final_div_factor"]
    peak = opts["pct_start"] * decay_steps - 1  # may be fractional, as the cycle's midpoint
    end = decay_steps - 1
    if t <= peak:
        return _half_cosine(base_lr, start, peak - t, peak)
    if t >= end:
        return final
    return _half_cosine(base_lr, final, t - peak, end - peak)


@dataclass(frozen=True)
class _Schedule:
    """A decay schedule: its lr after warm-up and the options it takes.

    ``lr(base_lr, t, decay_steps, options)`` gives the lr ``t`` steps after warm-up, where
    ``decay_steps`` is ``T_max - warmup_steps`` for schedules with a horizon (``None`` until the
    horizon is known). ``required`` options have no default; ``positive`` ones must be positive
    integers.
    """

    lr: Callable[[float, int, int | None, Options], float]
    defaults: Options
    required: tuple[str, ...] = ()
    positive: tuple[str, ...] = ()
    has_horizon: bool = False


SCHEDULES: dict[str, _Schedule] = {
    "cosine": _Schedule(_cosine, {"T_max": None, "eta_min": 0.0}, has_horizon=True),
    "cosine_restarts": _Schedule(
        _cosine_restarts, {"T_mult": 1, "eta_min": 0.0}, ("T_0",), ("T_0", "T_mult")
    ),
    "linear": _Schedule(_linear, {"T_max": None, "end_factor": 0.0}, has_horizon=True),
    "step": _Schedule(_step, {"gamma": 0.1}, ("step_size",), ("step_size",)),
    "exponential": _Schedule(_exponential, {}, ("gamma",)),
    "constant": _Schedule(_constant, {}),
    "onecycle": _Schedule(
        _onecycle, {"T_max": None, "pct_start": 0.3, "div_factor": 25.0,
                    "final_div_factor": 1e4}, has_horizon=True,
    ),
}


class WarmupScheduler(LRScheduler):
    """Linear warm-up followed by a decay schedule, in closed form of the step count ``t``.

    During warm-up (``t < warmup_steps``) the lr is ``base_lr * (t + 1) / warmup_steps``. After
    it the schedule runs on ``t' = t - warmup_steps``:

    - ``'cosine'`` (``T_max``, ``eta_min=0``): ``eta_min + (base_lr - eta_min) *
      (1 + cos(pi * t' / D)) / 2`` with ``D = T_max - warmup_steps``; ``T_max`` counts all
      steps, warm-up included, so the lr reaches ``eta_min`` at ``t = T_max`` and stays there.
    - ``'cosine_restarts'`` (``T_0``, ``T_mult=1``, ``eta_min=0``): cosine from ``base_lr`` to
      ``eta_min`` over periods of ``T_0``, ``T_0 * T_mult``, ``T_0 * T_mult**2``... steps,
      restarting at ``base_lr`` after each.
    - ``'linear'`` (``T_max``, ``end_factor=0``): ``base_lr * (1 + (end_factor - 1) * t' / D)``,
      reaching ``base_lr * end_factor`` at ``t = T_max`` and staying there.
    - ``'step'`` (``step_size``, ``gamma=0.1``): ``base_lr * gamma ** (t' // step_size)``.
    - ``'exponential'`` (``gamma``): ``base_lr * gamma ** t'``.
    - ``'constant'``: ``base_lr``.

    ``'cosine'`` and ``'linear'`` may be built without ``T_max``: then :attr:`needs_horizon` is
    True, the lr stays at ``base_lr`` after warm-up, and :meth:`set_horizon` fills it in later.

    Parameters
    ----------
    optimizer
        The optimizer whose groups' ``lr`` the scheduler sets.
    schedule
        One of ``SCHEDULES``: ``cosine, cosine_restarts, linear, step, exponential, constant``.
    warmup_steps
        Length of the linear warm-up, in units of ``interval``.
    interval
        ``'step'`` if :meth:`step` is called after every optimizer step, ``'epoch'`` if once per
        epoch. The scheduler only records it for the training loop.
    last_epoch
        ``-1`` to start; a resumed scheduler is better restored with :meth:`load_state_dict`.
    **options
        The schedule's options listed above.

    Examples
    --------
    >>> import torch
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> scheduler = WarmupScheduler(optimizer, "cosine", warmup_steps=2, T_max=4)
    >>> lrs = []
    >>> for _ in range(5):
    ...     lrs.append(round(optimizer.param_groups[0]["lr"], 4))
    ...     optimizer.step()
    ...     scheduler.step()
    >>> lrs
    [0.05, 0.1, 0.1, 0.05, 0.0]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: str = "cosine",
        warmup_steps: int = 0,
        interval: str = "step",
        last_epoch: int = -1,
        **options: Any,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}"
            )
        if not _is_int(warmup_steps) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        if interval not in INTERVALS:
            raise ValueError(f"interval must be one of: {', '.join(INTERVALS)}; got {interval!r}")
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.interval = interval
        self.options = _check_options(schedule, options)
        self.horizon_is_auto = False
        if self.options.get("T_max") is not None:
            self._warn_if_warmup_covers_horizon()
        super().__init__(optimizer, last_epoch)

    @property
    def needs_horizon(self) -> bool:
        """True when the trainer should (re)fill ``T_max`` from the length of its run.

        That is a cosine, linear or onecycle schedule with no ``T_max`` yet, or one whose
        ``T_max`` was filled by :meth:`set_horizon`: training on to more epochs re-fills it, so
        the decay always spans the run. A ``T_max`` given by the user is never replaced.
        """
        has_horizon = SCHEDULES[self.schedule].has_horizon
        return has_horizon and (self.options["T_max"] is None or self.horizon_is_auto)

    def set_horizon(self, total: int) -> None:
        """Set ``T_max``, the total number of steps (warm-up included) of the decay.

        The trainer calls it with ``epochs * optimizer steps per epoch`` (or ``epochs`` when
        ``interval == 'epoch'``) before the first step; the lr of the current step is
        recomputed. The horizon is saved by :meth:`state_dict`.

        Examples
        --------
        >>> import torch
        >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> scheduler = WarmupScheduler(optimizer, "linear")
        >>> scheduler.needs_horizon
        True
        >>> scheduler.set_horizon(100)
        >>> scheduler.options["T_max"], scheduler.horizon_is_auto
        (100, True)
        """
        if not SCHEDULES[self.schedule].has_horizon:
            raise ValueError(
                f"schedule {self.schedule!r} has no horizon; only cosine, linear and onecycle "
                "take one"
            )
        if not _is_int(total) or total < 1:
            raise ValueError(f"horizon must be a positive integer, got {total!r}")
        self.options["T_max"] = total
        self.horizon_is_auto = True
        self._warn_if_warmup_covers_horizon()
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = [float(group["lr"]) for group in self.optimizer.param_groups]

    def get_lr(self) -> list[float]:
        """Learning rates of all parameter groups at step ``last_epoch``."""
        t = self.last_epoch
        if t < self.warmup_steps:
            return [base_lr * (t + 1) / self.warmup_steps for base_lr in self.base_lrs]
        schedule = SCHEDULES[self.schedule]
        horizon = self.options.get("T_max")
        decay_steps = None if horizon is None else horizon - self.warmup_steps
        t -= self.warmup_steps
        return [schedule.lr(base_lr, t, decay_steps, self.options) for base_lr in self.base_lrs]

    _get_closed_form_lr = get_lr

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state as plain Python values (safe for ``weights_only`` loading)."""
        return {
            "schedule": self.schedule,
            "warmup_steps": self.warmup_steps,
            "interval": self.interval,
            "options": dict(self.options),
            "horizon_is_auto": self.horizon_is_auto,
            "base_lrs": [float(lr) for lr in self.base_lrs],
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "_last_lr": [float(lr) for lr in self._last_lr],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`, horizon included."""
        state = dict(state_dict)
        state["options"] = dict(state["options"])
        super().load_state_dict(state)

    def _warn_if_warmup_covers_horizon(self) -> None:
        if self.warmup_steps >= self.options["T_max"]:
            logger.warning(
                "warmup_steps (%d) >= horizon T_max (%d): the %s schedule has no decay phase "
                "and drops to its final lr right after warm-up",
                self.warmup_steps,
                self.options["T_max"],
                self.schedule,
            )


class PlateauScheduler(ReduceLROnPlateau):
    """``ReduceLROnPlateau`` with the scheduler protocol of :class:`WarmupScheduler`.

    It is stepped once per epoch with the monitored metric (``scheduler.step(val_loss)``) and
    has no horizon.

    Examples
    --------
    >>> import torch
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> scheduler = PlateauScheduler(optimizer, factor=0.5, patience=0)
    >>> scheduler.step(1.0)  # best so far
    >>> scheduler.step(1.0)  # no improvement for more than `patience` epochs
    >>> optimizer.param_groups[0]["lr"]
    0.05
    """

    interval = "epoch"
    needs_horizon = False


def _check_options(schedule: str, options: dict[str, Any]) -> dict[str, Any]:
    """Return the schedule's full options, raising TypeError/ValueError on bad ones."""
    spec = SCHEDULES[schedule]
    accepted = (*spec.required, *spec.defaults)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"schedule {schedule!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted) or 'no options'}"
        )
    missing = [name for name in spec.required if name not in options]
    if missing:
        raise TypeError(f"schedule {schedule!r} requires option(s): {', '.join(missing)}")
    values = {**spec.defaults, **options}
    for name in spec.positive:
        if not _is_int(values[name]) or values[name] < 1:
            raise ValueError(f"{schedule}: {name} must be a positive integer, got {values[name]!r}")
    if values.get("T_max") is not None and (not _is_int(values["T_max"]) or values["T_max"] < 1):
        raise ValueError(f"{schedule}: T_max must be a positive integer, got {values['T_max']!r}")
    if "gamma" in values and not values["gamma"] > 0:
        raise ValueError(f"{schedule}: gamma must be > 0, got {values['gamma']!r}")
    if "pct_start" in values and not 0 < values["pct_start"] < 1:
        raise ValueError(f"{schedule}: pct_start must be in (0, 1), got {values['pct_start']!r}")
    for name in ("div_factor", "final_div_factor"):
        if name in values and not values[name] > 0:
            raise ValueError(f"{schedule}: {name} must be > 0, got {values[name]!r}")
    return values


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
