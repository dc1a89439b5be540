"""Factories that build an optimizer and a learning-rate scheduler from their config names.

The training config names its optimizer and scheduler with a string (``optimizer: adamw``,
``scheduler: cosine``); these factories turn the names into objects, pass extra keyword
arguments through to the constructors, and reject unknown names and arguments with errors that
list what is accepted, so a misspelt config fails before training starts.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from nol_fast.checks import as_real
from nol_fast.optim import AdaBound, FusedAdam, FusedAdamW, PlateauScheduler, WarmupScheduler
from nol_fast.optim.schedulers import SCHEDULES

# name -> (optimizer class, constructor arguments fixed by the name)
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "adam": (FusedAdam, {}),
    "adamw": (FusedAdamW, {}),
    "sgd": (torch.optim.SGD, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adabound": (AdaBound, {}),
    "amsbound": (AdaBound, {"amsbound": True}),
}

SCHEDULERS: tuple[str, ...] = (*SCHEDULES, "plateau")


def create_optimizer(
    parameters: Iterable[Tensor] | Iterable[dict[str, Any]],
    optimizer_name: str = "adamw",
    learning_rate: float = 1e-4,
    weight_decay: float = 1e-5,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build an optimizer by name.

    Parameters
    ----------
    parameters
        Parameters (a generator such as ``model.parameters()`` or a list) or param-group dicts.
    optimizer_name
        Case-insensitive: ``adam``, ``adamw`` (:class:`nol_fast.optim.FusedAdam`,
        :class:`nol_fast.optim.FusedAdamW`), ``sgd``, ``rmsprop`` (``torch.optim``, with
        ``fused=True`` where torch has a fused kernel and the parameters are real CUDA tensors,
        ``foreach=True`` otherwise, unless ``foreach`` or ``fused`` is given), ``adabound``
        or ``amsbound`` (:class:`nol_fast.optim.AdaBound`; ``amsbound`` is ``adabound`` with
        ``amsbound=True``, which ``adabound`` also takes as a keyword).
    learning_rate, weight_decay
        Passed as ``lr`` and ``weight_decay``: any real number (NumPy scalars too), stored as
        a Python ``float``; ``learning_rate`` may also be a tensor for capturable optimizers.
    **kwargs
        Further constructor arguments of the optimizer (``betas``, ``eps``, ``momentum``,
        ``nesterov``, ``final_lr``, ``gamma``, ``amsbound``...).

    Returns
    -------
    torch.optim.Optimizer

    Raises
    ------
    ValueError
        For an unknown name.
    TypeError
        For a keyword argument the optimizer does not take.

    Examples
    --------
    >>> model = torch.nn.Linear(4, 2)
    >>> optimizer = create_optimizer(model.parameters(), "sgd", 1e-2, momentum=0.9,
    ...                              nesterov=True)
    >>> type(optimizer).__name__, optimizer.param_groups[0]["momentum"]
    ('SGD', 0.9)
    """
    name = _normalise(optimizer_name, OPTIMIZERS, "optimizer")
    cls, fixed = OPTIMIZERS[name]
    # Plain floats in the param groups keep optimizer state dicts loadable with weights_only;
    # a tensor lr (for capturable optimizers) is left to the optimizer to check.
    if not isinstance(learning_rate, Tensor):
        learning_rate = as_real(learning_rate, "learning_rate", minimum=0)
    weight_decay = as_real(weight_decay, "weight_decay", minimum=0)
    _check_kwargs(f"optimizer {name!r}", cls, kwargs, exclude={"params", "lr", *fixed})
    # Materialised, so the device check below does not consume generators.
    parameters = [
        entry if isinstance(entry, Tensor) else {**entry, "params": _as_list(entry["params"])}
        for entry in parameters
    ]
    if cls in (torch.optim.SGD, torch.optim.RMSprop) and not {"foreach", "fused"} & set(kwargs):
        fixed = {**fixed, **_multi_tensor_flag(cls, parameters)}
    return cls(parameters, lr=learning_rate, weight_decay=weight_decay, **fixed, **kwargs)


def _multi_tensor_flag(
    cls: type[torch.optim.Optimizer], parameters: list[Tensor] | list[dict[str, Any]]
) -> dict[str, bool]:
    """``{'fused': True}`` if ``cls`` has a fused kernel and the parameters are all real
    floating-point CUDA tensors, else ``{'foreach': True}``."""
    tensors = [
        tensor
        for entry in parameters
        for tensor in ([entry] if isinstance(entry, Tensor) else entry["params"])
    ]
    if not tensors or "fused" not in inspect.signature(cls.__init__).parameters:
        return {"foreach": True}
    device_types = {tensor.device.type for tensor in tensors}
    if device_types == {"cuda"} and all(t.is_floating_point() for t in tensors):
        return {"fused": True}
    return {"foreach": True}


def _as_list(params: Tensor | Iterable[Tensor]) -> list[Tensor]:
    """A group's ``params`` entry (one tensor or an iterable) as a list."""
    return [params] if isinstance(params, Tensor) else list(params)


def create_scheduler(
    optimizer: torch.optim.Optimizer,
    scheduler_name: str = "cosine",
    warmup_steps: int = 0,
    interval: str | None = None,
    **kwargs: Any,
) -> WarmupScheduler | PlateauScheduler:
    """Build a learning-rate scheduler by name.

    Parameters
    ----------
    optimizer
        The optimizer to schedule.
    scheduler_name
        Case-insensitive: ``cosine`` (``T_max``, ``eta_min``), ``cosine_restarts`` (``T_0``,
        ``T_mult``, ``eta_min``), ``linear`` (``T_max`` or its alias ``total_steps``,
        ``end_factor``), ``step`` (``step_size``, ``gamma``), ``exponential`` (``gamma``),
        ``constant``, ``onecycle`` (``T_max``, ``pct_start``, ``div_factor``,
        ``final_div_factor``): a :class:`~nol_fast.optim.WarmupScheduler`; or ``plateau``
        (the arguments of ``torch.optim.lr_scheduler.ReduceLROnPlateau``): a
        :class:`~nol_fast.optim.PlateauScheduler`.
    warmup_steps
        Linear warm-up length in units of ``interval``; for ``plateau``, in optimizer steps.
    interval
        ``'step'`` or ``'epoch'``: what one scheduler step stands for. Defaults to ``'step'``
        for the warm-up schedulers; ``plateau`` only takes ``'epoch'`` (its decisions).
    **kwargs
        The schedule's options. Every option that depends on the run's length (``T_max``,
        ``T_0``, ``step_size``, ``gamma`` of ``exponential``) may be left out: the Trainer
        fills it from the run before the first step, so the scheduler a config names works
        without options.

    Returns
    -------
    WarmupScheduler or PlateauScheduler
        Both have ``interval`` and ``needs_horizon``; a schedule built without its
        run-length option needs ``set_horizon(total_steps)`` before its first step.

    Examples
    --------
    >>> model = torch.nn.Linear(4, 2)
    >>> optimizer = create_optimizer(model.parameters(), "adamw", 1e-3)
    >>> scheduler = create_scheduler(optimizer, "cosine", warmup_steps=10, T_max=1000)
    >>> scheduler.interval, optimizer.param_groups[0]["lr"]
    ('step', 0.0001)
    """
    name = _normalise(scheduler_name, SCHEDULERS, "scheduler")
    if name == "plateau":
        if interval not in (None, "epoch"):
            raise ValueError(
                f"scheduler 'plateau' decides once per epoch (its warm-up counts optimizer "
                f"steps); got interval={interval!r}"
            )
        _check_kwargs(
            "scheduler 'plateau'", PlateauScheduler, kwargs, exclude={"optimizer", "warmup_steps"}
        )
        return PlateauScheduler(optimizer, warmup_steps, **kwargs)
    if name == "linear" and "total_steps" in kwargs:
        if "T_max" in kwargs:
            raise TypeError("scheduler 'linear': give T_max or its alias total_steps, not both")
        kwargs["T_max"] = kwargs.pop("total_steps")
    return WarmupScheduler(
        optimizer, name, warmup_steps=warmup_steps, interval=interval or "step", **kwargs
    )


def _normalise(name: str, known: Iterable[str], kind: str) -> str:
    """Lower-case ``name`` and check it is one of ``known``."""
    key = name.lower() if isinstance(name, str) else name
    if key not in known:
        raise ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(known)}")
    return key


def _check_kwargs(owner: str, cls: type, kwargs: dict[str, Any], exclude: set[str]) -> None:
    """Raise TypeError naming the keyword arguments that ``cls`` does not accept."""
    parameters = inspect.signature(cls.__init__).parameters
    accepted = [name for name in parameters if name not in exclude and name != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"{owner} got unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted)}"
        )
