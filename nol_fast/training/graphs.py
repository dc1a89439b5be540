"""The training step in CUDA graphs: captured once, replayed for every batch.

A neural-operator step on a GPU launches a few hundred short kernels; captured in a CUDA graph
they are replayed with one launch, so the host no longer decides the step's speed.
:class:`GraphedStep` wraps a :class:`~nol_fast.training.step.TrainStep` and captures two
graphs: one micro-batch (forward, loss, backward, the epoch's sums) and one optimizer step
(unscale, clip, the non-finite guard, the update, zeroing the gradients). With gradient
accumulation the micro-batch graph is replayed once per micro-batch and the step graph once
per group; the epoch's last, shorter group needs no graph of its own because the weight of a
micro-batch in its group is a device tensor (:meth:`TrainStep.set_group_size`).

What a replay reads has to stay where the capture found it:

- inputs and targets are copied into static buffers before each replay; a batch of another
  shape (the epoch's last one, usually) runs eagerly on the same tensors;
- gradients are zeroed in place rather than freed, so they keep their addresses;
- the optimizer must be capturable, with its learning rates held in device tensors: a
  scheduler writes into them (in place), so changing the lr needs no new capture. nol_fast's
  ``FusedAdam``/``FusedAdamW`` are made so (:func:`make_capturable`); an lr that was replaced
  by a number (``load_state_dict``, a hand-written schedule) is copied back into the captured
  tensor before the next step. Other hyper-parameters (betas, weight decay) are read at the
  capture;
- the optimizer's state and the model's parameters must stay the same tensors: loading a
  checkpoint into the Trainer drops the graphs (:meth:`Trainer.load_checkpoint`), and they are
  captured again.

Before the capture, the first ``warmup_groups`` accumulation groups run eagerly on a side
stream (as CUDA-graph capture requires: lazy initialisation, compilation, allocator state);
they are ordinary training steps. When the capture fails (an op that reads a value back to
the host, for instance), one warning says why and training goes on without graphs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from nol_fast.training.step import TrainStep

logger = logging.getLogger(__name__)

WARMUP_GROUPS = 3


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> bool:
    """Hold the learning rates of a nol_fast ``FusedAdam``/``FusedAdamW`` in device tensors.

    Sets ``capturable=True`` in every param group and replaces each ``lr`` number by a
    one-element tensor on ``device`` with its value, which schedulers then update in place.
    Returns whether ``optimizer`` can be captured: those, and any optimizer whose groups are
    all ``capturable=True`` with tensor learning rates.
    """
    from nol_fast.optim import FusedAdam

    if isinstance(optimizer, FusedAdam):
        for group in optimizer.param_groups:
            group["capturable"] = True
            if not isinstance(group["lr"], Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), device=device)
        return True
    return all(group.get("capturable", False) and isinstance(group["lr"], Tensor)
               for group in optimizer.param_groups)


class Capture(Protocol):
    """How a :class:`GraphedStep` warms up and captures; :class:`CudaCapture` on a GPU."""

    def warm_up(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` as a warm-up before capture; return its result."""

    def capture(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Record ``fn`` without running it; return what replays the recording."""

    def reset(self) -> None:
        """Recover after a capture that failed."""


class CudaCapture:
    """CUDA-graph capture on ``device``: warm-up on a side stream, one memory pool per graph.

    The capture uses ``capture_error_mode='thread_local'``, so that a data-loader thread
    pinning memory meanwhile does not invalidate it.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.side = torch.cuda.Stream(device)
        self.graphs: list[torch.cuda.CUDAGraph] = []  # kept alive as long as this object

    def warm_up(self, fn: Callable[[], Any]) -> Any:
        current = torch.cuda.current_stream(self.device)
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            result = fn()
        current.wait_stream(self.side)
        return result

    def capture(self, fn: Callable[[], None]) -> Callable[[], None]:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            fn()
        self.graphs.append(graph)
        return graph.replay

    def reset(self) -> None:
        self.graphs.clear()
        torch.cuda.synchronize(self.device)


class GraphedStep:
    """A :class:`TrainStep` whose micro-batches and optimizer steps replay CUDA graphs.

    It has the interface of :class:`TrainStep` (``set_group_size``, ``micro_batch``,
    ``optimizer_step``, ``totals``), so the training loop does not know which it drives.

    Parameters
    ----------
    step
        The step to capture, built with ``keep_grads=True``.
    capture
        How to warm up and capture (default: :class:`CudaCapture` on the step's device).
    warmup_groups
        Accumulation groups run eagerly (on a side stream) before the capture.
    """

    def __init__(self, step: TrainStep, capture: Capture | None = None,
                 warmup_groups: int = WARMUP_GROUPS) -> None:
        if not step.keep_grads:
            raise ValueError("a captured step must keep its gradients: TrainStep(keep_grads=True)")
        self.step = step
        self.totals = step.totals
        self.capturer = capture if capture is not None else CudaCapture(step.totals.device)
        self.warmup_groups = warmup_groups
        self.groups_warmed = 0
        self.failure: str | None = None  # why graphs are off, after a failed capture
        self._replay_micro: Callable[[], None] | None = None
        self._replay_step: Callable[[], None] | None = None
        self._static: dict[str, Any] = {}
        # The last warm-up batch and its outputs: the capture takes a batch of its shapes.
        self._warm: tuple[Tensor, Tensor, tuple[Tensor, dict[str, Tensor]]] | None = None
        self._lrs: list[Tensor] = []

    @property
    def captured(self) -> bool:
        return self._replay_micro is not None

    def set_group_size(self, size: int) -> None:
        self.step.set_group_size(size)

    def micro_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Replay the micro-batch graph on ``x, y`` (capturing it first once warm)."""
        if self.failure is not None:
            return self.step.micro_batch(x, y)
        if not self.captured:
            warm = self._warm
            if self.groups_warmed < self.warmup_groups or warm is None:
                outputs = self.capturer.warm_up(lambda: self.step.micro_batch(x, y))
                self._warm = (x, y, outputs)
                return outputs
            if not (_fits(x, warm[0]) and _fits(y, warm[1])):
                return self.step.micro_batch(x, y)  # capture a batch like the warm-up's
            self._try_capture(x, y)
            if self.failure is not None:
                return self.step.micro_batch(x, y)
        static = self._static
        if not (_fits(x, static["x"]) and _fits(y, static["y"])):
            return self.step.micro_batch(x, y)  # another shape: eagerly, on the same state
        static["x"].copy_(x, non_blocking=True)
        static["y"].copy_(y, non_blocking=True)
        self._replay_micro()
        # Copies: the next replay overwrites the static outputs.
        return static["loss"].clone(), {k: v.clone() for k, v in static["components"].items()}

    def optimizer_step(self) -> None:
        """Replay the optimizer-step graph (an eager step while warming up or without graphs)."""
        if self.failure is not None:
            self.step.optimizer_step()
        elif not self.captured:
            self.capturer.warm_up(self.step.optimizer_step)
            self.groups_warmed += 1
        else:
            self._restore_lrs()
            self._replay_step()

    def _micro_into_static(self) -> None:
        static = self._static
        loss, components = self.step.micro_batch(static["x"], static["y"])
        static["loss"].copy_(loss)
        for name, value in components.items():
            static["components"][name].copy_(value)

    def _try_capture(self, x: Tensor, y: Tensor) -> None:
        """Capture both graphs, or record why that failed and fall back to eager steps."""
        loss, components = self._warm[2]
        self._static = {
            "x": x.clone(), "y": y.clone(), "loss": torch.empty_like(loss),
            "components": {k: torch.empty_like(v) for k, v in components.items()},
        }
        for group in self.step.optimizer.param_groups:  # a number may have replaced a tensor
            if not isinstance(group["lr"], Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), device=self.totals.device)
        self._lrs = [group["lr"] for group in self.step.optimizer.param_groups]
        try:
            replay_micro = self.capturer.capture(self._micro_into_static)
            replay_step = self.capturer.capture(self.step.optimizer_step)
        except Exception as error:  # noqa: BLE001 - any failure means: no graphs
            self.failure = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
            logger.warning("cuda_graphs: capturing the training step failed (%s); training "
                           "goes on without CUDA graphs", self.failure)
            self._static = {}
            self.capturer.reset()
            _reset_scaler(self.step.scaler)
            return
        self._replay_micro, self._replay_step = replay_micro, replay_step
        self._warm = None
        logger.info("cuda_graphs: captured the training step for inputs %s and targets %s",
                    tuple(x.shape), tuple(y.shape))

    def _restore_lrs(self) -> None:
        """Put the captured lr tensors back where a number (or another tensor) replaced them."""
        for group, lr in zip(self.step.optimizer.param_groups, self._lrs, strict=True):
            value = group["lr"]
            if value is not lr:
                if isinstance(value, Tensor):
                    lr.copy_(value.reshape(lr.shape))
                else:
                    lr.fill_(float(value))
                group["lr"] = lr


def _fits(batch: Tensor, static: Tensor) -> bool:
    """Whether ``batch`` can be copied into ``static`` for a replay."""
    return (batch.shape == static.shape and batch.dtype == static.dtype
            and batch.device == static.device)


def _reset_scaler(scaler: torch.amp.GradScaler) -> None:
    """Forget the per-optimizer state that a failed capture left in an fp16 GradScaler."""
    if scaler.is_enabled():
        scaler.update(new_scale=scaler.get_scale())
