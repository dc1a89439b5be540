"""The callback protocol of the Trainer, and the shared base for metric-monitoring callbacks."""

from __future__ import annotations

import math
from abc import ABC
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from nol_fast.checks import as_real

if TYPE_CHECKING:
    from nol_fast.training.trainer import Trainer

BATCH_HOOKS = ("on_batch_begin", "on_batch_end")


class TrainingCallback(ABC):
    """Base class for training callbacks.

    Override any of the hooks; the defaults do nothing. The Trainer calls them at these points:

    - ``on_train_begin(trainer)`` / ``on_train_end(trainer)``: around ``Trainer.train``.
    - ``on_epoch_begin(trainer, epoch)``: ``epoch`` is the 0-based epoch index.
    - ``on_epoch_end(trainer, epoch, train_losses, val_losses)``: ``train_losses`` holds the
      epoch's training metrics (``'train_loss'`` and loss components), ``val_losses`` the
      validation metrics (``'val_loss'``, ``'val_rel_l2'``; empty when the epoch did not
      validate). ``trainer.logs`` holds every metric of the epoch, ``lr`` and ``epoch_time``
      included. Set ``trainer.stop_training = True`` to stop after this epoch.
    - ``on_batch_begin(trainer, batch_idx, batch)`` / ``on_batch_end(trainer, batch_idx,
      batch_metrics)``: around each training batch. ``batch_metrics['loss']`` is a 0-dim tensor
      on the training device; reading it (``float()``) synchronises with the device, so do it
      only every few batches.

    A hook may also be assigned on an instance (``callback.on_epoch_end = fn``); ``fn`` then
    receives the hook's arguments without ``self``. The Trainer skips per-batch dispatch entirely
    when no callback overrides or assigns a batch hook.

    Under a ``DistributedTrainer`` callbacks run on every rank, all seeing the same
    (all-reduced) metrics; a callback whose class sets :attr:`main_process_only` (such as
    ``TensorBoardLogger``) runs on global rank 0 only.

    Callbacks that keep state override :meth:`state_dict` and :meth:`load_state_dict`; the
    Trainer stores that state in its checkpoints so a resumed run continues where it stopped.
    They also override :meth:`reset_state`, which the Trainer calls at the start of a new run,
    so that an instance reused for another run starts afresh (Keras's EarlyStopping resets in
    ``on_train_begin`` for the same reason).
    """

    #: Run only on global rank 0 of a distributed run: for callbacks that only write files or
    #: logs and take no part in decisions that every rank must share.
    main_process_only: bool = False

    def on_train_begin(self, trainer: Trainer) -> None:
        """Called once at the start of ``Trainer.train``."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Called once at the end of ``Trainer.train``, also after an early stop."""

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        """Called at the start of each epoch (0-based index)."""

    def on_epoch_end(
        self,
        trainer: Trainer,
        epoch: int,
        train_losses: dict[str, float],
        val_losses: dict[str, float],
    ) -> None:
        """Called at the end of each epoch with that epoch's metrics."""

    def on_batch_begin(self, trainer: Trainer, batch_idx: int, batch: Any) -> None:
        """Called before each training batch."""

    def on_batch_end(self, trainer: Trainer, batch_idx: int, batch_metrics: dict[str, Any]) -> None:
        """Called after each training batch with 0-dim device tensors."""

    def state_dict(self) -> dict[str, Any]:
        """State to keep in checkpoints (plain data and tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def reset_state(self) -> None:
        """Forget the state of an earlier run.

        Called at the start of ``Trainer.train``, before ``on_train_begin``, unless the call
        continues the run this callback's state belongs to: the callback took part in the
        trainer's previous ``train`` call, or its state was restored from the checkpoint the
        trainer resumed from.
        """

    def overrides(self, hook: str) -> bool:
        """Whether this callback's class overrides ``hook`` (lets the loop skip no-op hooks)."""
        return getattr(type(self), hook) is not getattr(TrainingCallback, hook)


class MonitorCallback(TrainingCallback):
    """Shared base for callbacks that watch one metric for improvement.

    Parameters
    ----------
    monitor
        Name of the metric in the epoch logs, such as ``'val_loss'``.
    mode
        ``'min'`` if smaller is better, ``'max'`` if larger is better.
    min_delta
        An improvement must beat the best value by more than this.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.min_delta = as_real(min_delta, "min_delta", minimum=0)
        self.best = self.initial_best

    @property
    def initial_best(self) -> float:
        """The best value before any epoch: ``inf`` in ``'min'`` mode, ``-inf`` in ``'max'``."""
        return math.inf if self.mode == "min" else -math.inf

    def current_value(self, trainer: Trainer) -> float | None:
        """The monitored value of this epoch, or ``None`` when the epoch did not produce it.

        A metric that the run never logs is an error naming the metrics it does log.
        """
        logs = trainer.logs
        if self.monitor not in logs:
            raise KeyError(
                f"{type(self).__name__} monitors '{self.monitor}', which is not logged; "
                f"logged metrics: {', '.join(sorted(logs))}"
            )
        value = logs[self.monitor]
        return None if math.isnan(value) else float(value)

    def reset_state(self) -> None:
        self.best = self.initial_best

    def is_improvement(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]


class CallbackList:
    """Dispatches hooks to callbacks; per-batch hooks only when some callback implements them.

    A callback implements a hook when its class overrides it or the hook was assigned on the
    instance.
    """

    def __init__(self, callbacks: Iterable[TrainingCallback] | None):
        self.callbacks = list(callbacks or [])
        for callback in self.callbacks:
            if not isinstance(callback, TrainingCallback):
                raise TypeError(
                    f"callbacks must be TrainingCallback instances, got {type(callback).__name__}"
                )
        self.wants_batch_hooks = any(
            _implements(cb, hook) for cb in self.callbacks for hook in BATCH_HOOKS
        )

    def call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            if _implements(callback, hook):
                getattr(callback, hook)(*args)

    def start_run(self, carried: Iterable[TrainingCallback]) -> None:
        """Reset the state of every callback except those ``carried`` over from this run."""
        for callback in self.callbacks:
            if not any(callback is other for other in carried):
                callback.reset_state()

    def keyed(self) -> dict[str, TrainingCallback]:
        """Callbacks keyed by position and class, the key their checkpointed state uses."""
        return {f"{i}:{type(cb).__name__}": cb for i, cb in enumerate(self.callbacks)}


def _implements(callback: TrainingCallback, hook: str) -> bool:
    """Whether ``hook`` is assigned on the instance or overridden by its class."""
    return hook in vars(callback) or callback.overrides(hook)
