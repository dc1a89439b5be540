"""Callback dispatch across ranks: shared stop decisions, writers on global rank 0 only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nol_fast.distributed import collectives
from nol_fast.training.callbacks.base import CallbackList, TrainingCallback


class DistributedCallbackList(CallbackList):
    """A :class:`CallbackList` for one rank of a distributed run.

    Every callback runs on every rank, except those whose class sets ``main_process_only``
    (``TensorBoardLogger``), which run on global rank 0 only. After ``on_epoch_end`` the ranks
    agree on ``trainer.stop_training``: when a callback stops training on one rank, all ranks
    stop after the same epoch, so none waits for the others in a collective that never comes.
    All callbacks keep their place in :meth:`keyed`, so checkpointed callback states match a
    run on one process.
    """

    def __init__(self, callbacks: Iterable[TrainingCallback] | None, is_main: bool) -> None:
        super().__init__(callbacks)
        self.local = CallbackList(
            [cb for cb in self.callbacks if is_main or not cb.main_process_only]
        )
        self.wants_batch_hooks = self.local.wants_batch_hooks

    def call(self, hook: str, *args: Any) -> None:
        self.local.call(hook, *args)
        if hook == "on_epoch_end":
            trainer = args[0]
            # the trainer's control group, looked up per call: holding it here would keep it
            # alive after DistributedTrainer.close()
            trainer.stop_training = collectives.any_rank(trainer.stop_training, trainer._control)
