"""Preemption: on SIGTERM or SIGUSR1, every rank stops at the same step, saves, and exits.

Clusters announce the end of a job with a signal: Slurm sends SIGTERM (or the signal of
``--signal``, SIGUSR1 by convention) some time before it kills the job, and torchrun forwards
the signals it handles (``--signals-to-handle``) to its workers. The signal may reach the ranks
at different steps, or only some of them.

:class:`PreemptionWatch` records the signal in its handler and shares it at each optimizer step
with an all-reduce of the signal number on the gloo control group. The all-reduce is started
at one step and read at the next, so it overlaps the step's work and never waits on the
device; every rank reads the same result at the same step, so all stop there together, one step
after the first rank saw the signal. The trainer then saves a checkpoint collectively and raises
:class:`TrainingPreempted`, which exits the process with status ``128 + signal`` (143 for
SIGTERM), as a process killed by the signal would: torchrun's ``--max-restarts`` then restarts
the workers, and a relaunched job resumes from the checkpoint.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

#: The signals that ask a run to save and stop.
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingPreempted(SystemExit):
    """Training stopped on a signal after saving ``checkpoint``; exits with ``128 + signum``.

    A ``SystemExit``: left uncaught, the process exits quietly with that status.
    """

    def __init__(self, signum: int, checkpoint: str, epoch: int, batch: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.batch = batch

    def __str__(self) -> str:
        return (f"preempted by {signal.Signals(self.signum).name} in epoch {self.epoch + 1} "
                f"after batch {self.batch}; saved {self.checkpoint}")


class PreemptionWatch:
    """Signal handlers and the step-wise agreement of all ranks on stopping.

    Use as a context manager around training: it installs handlers for :data:`SIGNALS` (in the
    main thread) and restores the previous ones on exit. Every rank must call :meth:`poll` at
    the same steps.

    Parameters
    ----------
    group
        The gloo group of all ranks that carries the flag.
    """

    def __init__(self, group: Any) -> None:
        self.group = group
        self.received = 0  # the signal number this rank received, 0 for none
        self.agreed = 0  # the signal number all ranks stop on, 0 while they go on
        self._flag = torch.zeros(1, dtype=torch.int64)
        self._pending: Any = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> PreemptionWatch:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if exc_info[0] is None:
            self._drain()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        if self.received and not self.agreed and exc_info[0] is None:
            logger.warning("received %s after the last training step; training completed",
                           signal.Signals(self.received).name)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.received:
            logger.warning("received %s: all ranks save a checkpoint at the next step and stop",
                           signal.Signals(signum).name)
        self.received = signum

    def poll(self) -> bool:
        """At an optimizer step: whether all ranks stop now (the agreement started at the
        previous step), after starting the agreement on this step's flags."""
        if self._pending is not None:
            self._pending.wait()
            self._pending = None
            self.agreed = int(self._flag.item())
            if self.agreed:
                return True
        self._flag = torch.tensor([self.received], dtype=torch.int64)
        self._pending = dist.all_reduce(self._flag, op=dist.ReduceOp.MAX, group=self.group,
                                        async_op=True)
        return False

    def _drain(self) -> None:
        """Finish the agreement in flight, so that no collective is left pending."""
        if self._pending is not None:
            self._pending.wait()
            self._pending = None
