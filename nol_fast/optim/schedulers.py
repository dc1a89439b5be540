"""Learning-rate schedulers with linear warm-up, computed in closed form from the step count.

One class, :class:`WarmupScheduler`, covers every decay schedule the training loop offers
(cosine, cosine with warm restarts, linear, step, exponential, constant, one cycle). Computing
the lr from the step count, instead of updating it recursively, means that resuming from a
checkpoint or filling in the horizon late (:meth:`WarmupScheduler.set_horizon`) gives exactly the
lr an uninterrupted run would have had, and the state is a handful of plain Python values that a
``torch.load(..., weights_only=True)`` checkpoint can hold.

Schedulers carry the protocol the trainer relies on:

``interval``
    ``'step'`` (stepped after every optimizer step) or ``'epoch'`` (once per epoch); all step
    counts of the scheduler, warm-up and horizon included, are in this unit.
``needs_horizon``
    True when the trainer should fill the schedule's horizon option from its run length: the
    user gave none, or an earlier fill set it. That option is ``T_max`` for cosine, linear and
    onecycle, ``T_0`` for cosine_restarts, ``step_size`` for step and ``gamma`` for exponential.
``set_horizon(total)``
    Fills that option from ``total``, the steps of the whole run, warm-up included.

:class:`~nol_fast.optim.plateau.PlateauScheduler` gives ``ReduceLROnPlateau`` the same
attributes.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from nol_fast.checks import as_int, as_real

logger = logging.getLogger(__name__)

INTERVALS = ("step", "epoch")

Options = dict[str, Any]


def _half_cosine(base_lr: float, eta_min: float, t: int, period: int) -> float:
    """Cosine annealing from ``base_lr`` (t = 0) to ``eta_min`` (t = period)."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t / period)) / 2


def _cosine(base_lr: float, t: int, decay_steps: int | None, opts: Options) -> float:
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
    start = base_lr / opts["div_factor"]
    final = start / opts["final_div_factor"]
    peak = opts["pct_start"] * decay_steps - 1  # may be fractional, as the cycle's midpoint
    end = decay_steps - 1
    if t <= peak:
        return _half_cosine(base_lr, start, peak - t, peak)
    if t >= end:
        return final
    return _half_cosine(base_lr, final, t - peak, end - peak)


#: The lr the default ``exponential`` schedule reaches at the end of the run, as a fraction of
#: base_lr; the default ``step`` schedule ends there too, after two decays by gamma=0.1.
DEFAULT_FINAL_FACTOR = 0.01


def _whole_run(total: int, decay: int, opts: Options) -> int:
    """``T_max``: the whole run, warm-up included."""
    return total


def _three_cycles(total: int, decay: int, opts: Options) -> int:
    """``T_0`` such that three restart periods (``T_0``, ``T_0 * T_mult``, ...) cover the decay."""
    t_mult = opts["T_mult"]
    return max(1, math.ceil(decay / (1 + t_mult + t_mult**2)))


def _thirds(total: int, decay: int, opts: Options) -> int:
    """``step_size`` that decays at one and two thirds of the decay phase."""
    return max(1, math.ceil(decay / 3))


def _final_factor_at_end(total: int, decay: int, opts: Options) -> float:
    """``gamma`` that reaches ``DEFAULT_FINAL_FACTOR * base_lr`` at the end of the run."""
    return DEFAULT_FINAL_FACTOR ** (1 / decay)


@dataclass(frozen=True)
class _Schedule:
    """A decay schedule: its lr after warm-up and the options it takes.

    ``lr(base_lr, t, decay_steps, options)`` gives the lr ``t`` steps after warm-up, where
    ``decay_steps`` is ``T_max - warmup_steps`` for schedules with a ``T_max``. ``positive``
    options must be positive integers. ``horizon_option`` is the option that
    :meth:`WarmupScheduler.set_horizon` fills when the user gave none; ``from_horizon(total,
    decay, options)`` computes it from the run's ``total`` steps and its ``decay`` steps after
    warm-up (at least 1).
    """

    lr: Callable[[float, int, int | None, Options], float]
    defaults: Options
    positive: tuple[str, ...] = ()
    horizon_option: str | None = None
    from_horizon: Callable[[int, int, Options], Any] | None = None


SCHEDULES: dict[str, _Schedule] = {
    "cosine": _Schedule(
        _cosine, {"T_max": None, "eta_min": 0.0}, ("T_max",), "T_max", _whole_run
    ),
    "cosine_restarts": _Schedule(
        _cosine_restarts, {"T_0": None, "T_mult": 1, "eta_min": 0.0}, ("T_0", "T_mult"), "T_0",
        _three_cycles,
    ),
    "linear": _Schedule(
        _linear, {"T_max": None, "end_factor": 0.0}, ("T_max",), "T_max", _whole_run
    ),
    "step": _Schedule(_step, {"step_size": None, "gamma": 0.1}, ("step_size",), "step_size",
                      _thirds),
    "exponential": _Schedule(_exponential, {"gamma": None}, (), "gamma", _final_factor_at_end),
    "constant": _Schedule(_constant, {}),
    "onecycle": _Schedule(
        _onecycle, {"T_max": None, "pct_start": 0.3, "div_factor": 25.0,
                    "final_div_factor": 1e4}, ("T_max",), "T_max", _whole_run,
    ),
}


class WarmupScheduler(LRScheduler):
    """Linear warm-up followed by a decay schedule, in closed form of the step count ``t``.

    During warm-up (``t < warmup_steps``) the lr is ``base_lr * (t + 1) / warmup_steps``. After
    it the schedule runs on ``t' = t - warmup_steps``, where ``D`` is the length of the decay:
    ``T_max - warmup_steps`` for schedules with a ``T_max``, else ``total - warmup_steps`` for a
    run of ``total`` steps (at least 1).

    - ``'cosine'`` (``T_max``, ``eta_min=0``): ``eta_min + (base_lr - eta_min) *
      (1 + cos(pi * t' / D)) / 2``; ``T_max`` counts all steps, warm-up included, so the lr reaches
      ``eta_min`` at ``t = T_max`` and stays there.
    - ``'cosine_restarts'`` (``T_0``, ``T_mult=1``, ``eta_min=0``): cosine from ``base_lr`` to
      ``eta_min`` over periods of ``T_0``, ``T_0 * T_mult``, ``T_0 * T_mult**2``... steps,
      restarting at ``base_lr`` after each. Without ``T_0``: ``ceil(D / (1 + T_mult +
      T_mult**2))``, three periods over the run.
    - ``'linear'`` (``T_max``, ``end_factor=0``): ``base_lr * (1 + (end_factor - 1) * t' / D)``,
      reaching ``base_lr * end_factor`` at ``t = T_max`` and staying there.
    - ``'step'`` (``step_size``, ``gamma=0.1``): ``base_lr * gamma ** (t' // step_size)``.
      Without ``step_size``: ``ceil(D / 3)``, decays at one and two thirds of the run.
    - ``'exponential'`` (``gamma``): ``base_lr * gamma ** t'``. Without ``gamma``:
      ``0.01 ** (1 / D)``, reaching ``0.01 * base_lr`` at the end of the run.
    - ``'constant'``: ``base_lr``.
    - ``'onecycle'`` (``T_max``, ``pct_start=0.3``, ``div_factor=25``, ``final_div_factor=1e4``):
      torch's ``OneCycleLR`` without momentum cycling.

    The option that depends on the run's length (``T_max``, ``T_0``, ``step_size`` or
    ``gamma``) may be left out when the length is not known yet: then :attr:`needs_horizon` is
    True, :meth:`set_horizon` fills it (the Trainer does so before its first step), and until
    then the lr stays at ``base_lr`` after warm-up. Stepping such a scheduler warns once.

    Parameters
    ----------
    optimizer
        The optimizer whose groups' ``lr`` the scheduler sets.
    schedule
        One of ``SCHEDULES``: ``cosine, cosine_restarts, linear, step, exponential, constant,
        onecycle``.
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
        if interval not in INTERVALS:
            raise ValueError(f"interval must be one of: {', '.join(INTERVALS)}; got {interval!r}")
        self.schedule = schedule
        self.warmup_steps = as_int(warmup_steps, "warmup_steps", minimum=0)
        self.interval = interval
        self.options = _check_options(schedule, options)
        self.horizon_is_auto = False
        self._warned_no_horizon = False
        if self.options.get("T_max") is not None:
            self._warn_if_warmup_covers(self.options["T_max"])
        super().__init__(optimizer, last_epoch)

    @property
    def horizon_option(self) -> str | None:
        """The option that depends on the run's length, or ``None`` (``constant``)."""
        return SCHEDULES[self.schedule].horizon_option

    @property
    def needs_horizon(self) -> bool:
        """True when the trainer should (re)fill :attr:`horizon_option` from its run length.

        That is a schedule whose horizon option was not given, or was filled by
        :meth:`set_horizon`: training on to more epochs re-fills it, so the decay always spans
        the run. A value given by the user is never replaced.
        """
        option = self.horizon_option
        return option is not None and (self.options[option] is None or self.horizon_is_auto)

    def set_horizon(self, total: int) -> None:
        """Fill :attr:`horizon_option` for a run of ``total`` steps (warm-up included).

        The trainer calls it with ``epochs * optimizer steps per epoch`` (or ``epochs`` when
        ``interval == 'epoch'``) before the first step; the lr of the current step is
        recomputed. The filled option is saved by :meth:`state_dict`.

        Raises
        ------
        ValueError
            When the schedule has no option to fill (``constant``, or the option was given),
            or ``total`` is not a positive integer.

        Examples
        --------
        >>> import torch
        >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> scheduler = WarmupScheduler(optimizer, "step")
        >>> scheduler.needs_horizon
        True
        >>> scheduler.set_horizon(90)
        >>> scheduler.options["step_size"], scheduler.horizon_is_auto
        (30, True)
        """
        option = self.horizon_option
        if not self.needs_horizon:
            reason = (
                "it takes no options" if option is None
                else f"{option}={self.options[option]!r} was given"
            )
            raise ValueError(f"schedule {self.schedule!r} has no horizon to fill: {reason}")
        total = as_int(total, "horizon", minimum=1)
        decay = max(total - self.warmup_steps, 1)
        spec = SCHEDULES[self.schedule]
        self.options[option] = spec.from_horizon(total, decay, self.options)
        self.horizon_is_auto = True
        self._warn_if_warmup_covers(total)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            set_group_lr(group, lr)
        self._last_lr = [float(group["lr"]) for group in self.optimizer.param_groups]

    def step(self, epoch: int | None = None) -> None:
        """Advance one step (warns once if the horizon option is still missing)."""
        option = self.horizon_option
        missing = option is not None and self.options[option] is None
        # _step_count is 0 only for the step LRScheduler takes while constructing.
        if missing and self._step_count and not self._warned_no_horizon:
            self._warned_no_horizon = True
            warnings.warn(
                f"the {self.schedule!r} schedule is stepped without its horizon: {option} "
                f"was not given and set_horizon() was not called, so after warm-up the lr "
                f"stays at its base value. Pass {option}=... to create_scheduler, or call "
                f"scheduler.set_horizon(total) with the run's total number of "
                f"{self.interval}s (the Trainer does this for the schedulers it or a "
                f"LearningRateScheduler callback steps)",
                UserWarning, stacklevel=2,
            )
        super().step(epoch)

    def get_lr(self) -> list[float]:
        """Learning rates of all parameter groups at step ``last_epoch``."""
        t = self.last_epoch
        if t < self.warmup_steps:
            return [base_lr * (t + 1) / self.warmup_steps for base_lr in self.base_lrs]
        option = self.horizon_option
        if option is not None and self.options[option] is None:
            return list(self.base_lrs)  # no horizon yet
        horizon = self.options.get("T_max")
        decay_steps = None if horizon is None else horizon - self.warmup_steps
        t -= self.warmup_steps
        schedule = SCHEDULES[self.schedule]
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

    def _warn_if_warmup_covers(self, total: int) -> None:
        if self.warmup_steps < total:
            return
        if self.horizon_option == "T_max":
            logger.warning(
                "warmup_steps (%d) >= horizon T_max (%d): the %s schedule has no decay phase "
                "and drops to its final lr right after warm-up",
                self.warmup_steps, total, self.schedule,
            )
        else:
            logger.warning(
                "warmup_steps (%d) >= horizon (%d): the run ends before the %s schedule decays",
                self.warmup_steps, total, self.schedule,
            )


def set_group_lr(group: dict[str, Any], lr: float) -> None:
    """Set a param group's lr, in place when it is a tensor (capturable optimizers)."""
    if isinstance(group["lr"], Tensor):
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr


def _check_options(schedule: str, options: dict[str, Any]) -> dict[str, Any]:
    """Return the schedule's full options as plain numbers, raising on bad ones.

    Unknown options are a ``TypeError`` listing the accepted ones; bad values a ``ValueError``.
    """
    spec = SCHEDULES[schedule]
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        raise TypeError(
            f"schedule {schedule!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(spec.defaults) or 'no options'}"
        )
    values = {**spec.defaults, **options}
    for name, value in values.items():
        if value is None:
            continue  # a horizon option left for set_horizon
        if name in spec.positive:
            values[name] = as_int(value, f"{schedule}: {name}", minimum=1)
        else:
            values[name] = as_real(value, f"{schedule}: {name}")
    if values.get("gamma") is not None and not values["gamma"] > 0:
        raise ValueError(f"{schedule}: gamma must be > 0, got {values['gamma']!r}")
    if "pct_start" in values and not 0 < values["pct_start"] < 1:
        raise ValueError(f"{schedule}: pct_start must be in (0, 1), got {values['pct_start']!r}")
    for name in ("div_factor", "final_div_factor"):
        if name in values and not values[name] > 0:
            raise ValueError(f"{schedule}: {name} must be > 0, got {values[name]!r}")
    return values
