"""The Trainer: one readable training loop with callbacks, checkpoints and mixed precision.

The loop, per optimizer step: fetch a batch, move it with ``non_blocking``, run the forward
pass under autocast, compute the loss, scale it for accumulation (and fp16 loss scaling), run
backward; after ``gradient_accumulation_steps`` micro-batches unscale, clip, step the optimizer
and the per-step scheduler. The device work of a step is :class:`~nol_fast.training.step.
TrainStep`'s (eager, compiled, or replayed from CUDA graphs by :class:`~nol_fast.training.graphs.
GraphedStep`): it reads nothing back to the host, and a step with a non-finite loss or gradient
changes no weight. Losses accumulate on the device (:class:`~nol_fast.training.totals.
EpochTotals`) and are read back every ``log_frequency`` batches and at the end of the epoch,
so the loop does not wait on the device per step; a non-finite value is reported at that read.

Device placement (:meth:`Trainer.place_model`), checkpoint writing
(:meth:`Trainer.save_checkpoint`) and callback dispatch (:class:`CallbackList`) each live in one
overridable place, which is where distributed training plugs in; so do the loop's hooks
(:meth:`Trainer._epoch_batches`, :meth:`Trainer._gradient_sync`, :meth:`Trainer._stop_requested`,
:meth:`Trainer._read_totals`), which do nothing special on one process.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from nol_fast.checks import as_int
from nol_fast.data.normalization import DataNormalizer
from nol_fast.training.batches import to_device, unpack_batch
from nol_fast.training.callbacks.base import CallbackList, TrainingCallback
from nol_fast.training.callbacks.lr_scheduler import LearningRateScheduler
from nol_fast.training.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    atomic_save,
    capture_rng_state,
    check_optimizer_fits,
    check_state_dict_fits,
    load_checkpoint_file,
    loader_generators,
    restore_rng_state,
)
from nol_fast.training.config import TrainingConfig
from nol_fast.training.evaluation import evaluate_loader
from nol_fast.training.fast_paths import choose_fast_paths, compiled, unwrap_compiled
from nol_fast.training.graphs import GraphedStep
from nol_fast.training.history import is_validation_metric, record_epoch, upgrade_history
from nol_fast.training.optimizers import create_optimizer
from nol_fast.training.precision import autocast, grad_scaler
from nol_fast.training.progress import EpochProgress, ensure_log_output, log_epoch
from nol_fast.training.scheduling import SchedulerStepper, trainer_interval
from nol_fast.training.step import TrainStep
from nol_fast.training.totals import EpochTotals, NonFiniteLossError, TotalsReading

__all__ = ["NonFiniteLossError", "Trainer"]

logger = logging.getLogger(__name__)


class Trainer:
    """Train a neural operator.

    Parameters
    ----------
    model
        The model to train (any ``nn.Module``; :class:`~nol_fast.models.NeuralOperatorBase`
        models also get their inputs' shapes checked).
    train_loader, val_loader
        Loaders yielding ``(x, y)`` tuples/lists or dicts with ``'x'`` and ``'y'``.
        ``val_loader`` may be ``None``.
    optimizer
        A ``torch.optim.Optimizer``. ``None`` builds one from ``config`` with
        :func:`~nol_fast.training.optimizers.create_optimizer`.
    scheduler
        Optional learning-rate scheduler. Schedulers from ``create_scheduler`` step per optimizer
        step (or per epoch when created with ``interval='epoch'``); other schedulers step per
        epoch, and ``ReduceLROnPlateau`` per validation with ``config.monitor`` (a
        ``PlateauScheduler`` warms up per optimizer step first). A scheduler created without
        its run-length option (``'cosine'`` without ``T_max``, ``'step'`` without
        ``step_size``...) gets ``epochs × optimizer steps per epoch`` as its horizon when
        training starts. See :mod:`nol_fast.training.scheduling`.
    loss_fn
        ``loss_fn(pred, target)`` returning a scalar tensor; default MSE. A loss whose
        signature has an ``inputs`` parameter also receives the batch inputs. If the loss
        exposes ``last_components`` (a dict of 0-dim tensors), each component is logged as
        ``train_<name>`` / ``val_<name>``.
    device
        Training device; default: the device of the model's parameters.
    config
        A :class:`TrainingConfig`; default ``TrainingConfig()``. Its ``compile``,
        ``cuda_graphs``, ``mixed_precision`` and ``amp_dtype`` choose the step's fast paths
        (:mod:`nol_fast.training.fast_paths`), logged when training starts.

    Examples
    --------
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from nol_fast.models import FNO
    >>> from nol_fast.training.callbacks import EarlyStopping
    >>> x = torch.randn(16, 1, 32)
    >>> train_loader = DataLoader(TensorDataset(x[:12], x[:12] ** 2), batch_size=4)
    >>> val_loader = DataLoader(TensorDataset(x[12:], x[12:] ** 2), batch_size=4)
    >>> model = FNO(n_modes=(8,), hidden_channels=8, n_layers=2)
    >>> optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    >>> trainer = Trainer(model=model, train_loader=train_loader, val_loader=val_loader,
    ...                   optimizer=optimizer, loss_fn=torch.nn.MSELoss(), device="cpu")
    >>> history = trainer.train(epochs=3, callbacks=[EarlyStopping(patience=10)])
    >>> len(history["train_loss"]), len(history["val_loss"])
    (3, 3)
    """

    def __init__(
        self,
        model: nn.Module,
        train_loader: Iterable,
        val_loader: Iterable | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        loss_fn: Callable[..., torch.Tensor] | None = None,
        device: torch.device | str | None = None,
        config: TrainingConfig | None = None,
    ):
        ensure_log_output()
        self.config = config if config is not None else TrainingConfig()
        if not isinstance(self.config, TrainingConfig):
            raise TypeError(f"config must be a TrainingConfig, got {type(self.config).__name__}")
        # torch.compile(model) is unwrapped: the Trainer compiles its own step, and
        # checkpoints and callbacks see the plain module's parameter names.
        model, model_was_compiled = unwrap_compiled(model)
        self.device = torch.device(device) if device is not None else _model_device(model)
        if self.device.type == "cuda" and self.device.index is not None:
            # Code that launches on the current device (Triton kernels, the CUDA extension,
            # tensors made with device="cuda") then follows the training device.
            torch.cuda.set_device(self.device)
        self.model = self.place_model(model)
        self.train_loader = train_loader
        self.val_loader = val_loader
        # Loaders built with ``normalize: true`` serve encoded inputs and carry the
        # normalizer fitted on the training split; outputs are decoded with it before the loss.
        normalizer = getattr(train_loader, "normalizer", None)
        self.normalizer = None if normalizer is None else normalizer.to(self.device)
        if optimizer is None:
            optimizer = create_optimizer(
                self.model.parameters(), self.config.optimizer, self.config.learning_rate,
                self.config.weight_decay,
            )
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss_fn = loss_fn if loss_fn is not None else nn.MSELoss()
        self._loss_takes_inputs = _accepts_keyword(self.loss_fn, "inputs")
        self.fast_paths = choose_fast_paths(self.config, self.device, self.optimizer,
                                            model_was_compiled)
        if self.config.cuda_graphs and not self.fast_paths.cuda_graphs:
            logger.warning("cuda_graphs: not used: %s", self.fast_paths.reasons["cuda_graphs"])
        self.amp_dtype = self.fast_paths.amp_dtype
        self.scaler = grad_scaler(self.device, self.amp_dtype)
        mode = self.fast_paths.compile_mode
        self._train_loss_fn = compiled(self._train_loss, mode)
        self._eval_forward = compiled(self._forward_loss, mode)
        # The step's device work (TrainStep or GraphedStep); built when training starts.
        self._runner: TrainStep | GraphedStep | None = None
        self._fast_paths_logged = False

        # Training state: everything below is saved in checkpoints.
        self.epoch = 0  # epochs completed
        self.global_step = 0  # optimizer steps taken
        self.global_batch = 0  # training batches seen
        self.history: dict[str, list[float]] = {}
        # Set during training, read by callbacks.
        self.logs: dict[str, float] = {}
        self.params: dict[str, Any] = {}  # of the current train call: 'epochs', 'steps'
        self.stop_training = False
        self.took_optimizer_step = False
        self.callbacks = CallbackList(None)
        # Steps self.scheduler, unless a callback does; set by train().
        self._stepper: SchedulerStepper | None = None
        self._pending_callback_state: dict[str, Any] = {}
        # Callbacks whose state belongs to this run: those of the last train call.
        self._run_callbacks: list[TrainingCallback] = []

    # ------------------------------------------------------------------ hooks
    def place_model(self, model: nn.Module) -> nn.Module:
        """Move the model to the training device (distributed trainers wrap it here)."""
        return model.to(self.device)

    @property
    def unwrapped_model(self) -> nn.Module:
        """The model without the wrapper :meth:`place_model` may have put around it (DDP)."""
        return self.model

    def model_state_dict(self) -> dict[str, Any]:
        """The model's weights as a plain state dict, the form checkpoints hold.

        A distributed trainer gathers sharded weights into full tensors and strips its wrapper's
        key prefixes, so the result loads into the model on one process.
        """
        return self.unwrapped_model.state_dict()

    def load_model_state_dict(self, state: dict[str, Any]) -> None:
        """Load weights in the form :meth:`model_state_dict` returns."""
        self.unwrapped_model.load_state_dict(state)

    def save_weights(self, filepath: str) -> None:
        """Write :meth:`model_state_dict` to ``filepath`` atomically (a plain state dict file)."""
        atomic_save(self.model_state_dict(), filepath)

    # ------------------------------------------------------------------ public API
    def train(
        self, epochs: int, callbacks: list[TrainingCallback] | None = None
    ) -> dict[str, list[float]]:
        """Train until ``epochs`` epochs in total have run, or a callback stops training.

        ``epochs`` counts from the start of the run: a trainer restored from a checkpoint taken
        after epoch k continues with epoch k+1.

        Callbacks reused from another run start afresh (their ``reset_state``); those that
        continue this run (given to this trainer's previous ``train`` call, or restored from
        the checkpoint it resumed from) keep their state.

        Returns
        -------
        The history: lists keyed ``'train_loss'``, ``'lr'``, ``'epoch_time'`` (and loss
        components / callback metrics), one entry per epoch of the whole run; ``'val_loss'``,
        ``'val_rel_l2'`` (and other ``val_*`` metrics), one entry per validated epoch, with
        those epochs (1-based) in ``'val_epoch'``.
        """
        epochs = as_int(epochs, "epochs", minimum=1)
        self.callbacks = self._callback_list(callbacks)
        self.callbacks.start_run(carried=self._run_callbacks + self._restore_callback_state())
        self._run_callbacks = list(self.callbacks.callbacks)
        self.params = {"epochs": epochs, "steps": _safe_len(self.train_loader)}
        self._stepper = self._scheduler_stepper()
        if self._stepper is not None:
            self._stepper.fill_horizon(epochs, lambda: self.steps_per_epoch)
        self.stop_training = False
        if not self._fast_paths_logged:
            logger.info("%s", self.fast_paths.describe(self.optimizer, self.config.log_frequency))
            self._fast_paths_logged = True
        if self.epoch >= epochs:
            logger.info("already trained for %d epochs; nothing to do", self.epoch)
        self.callbacks.call("on_train_begin", self)
        for epoch in range(self.epoch, epochs):
            self.callbacks.call("on_epoch_begin", self, epoch)
            start = time.perf_counter()
            train_metrics = self._train_epoch(epoch, epochs)
            val_metrics = self._validation_metrics(epoch, epochs)  # {} if it does not validate
            lr = self.current_lr()
            self.epoch = epoch + 1
            self.logs = {
                **train_metrics, **(val_metrics or self._unvalidated_metrics()), "lr": lr,
                "epoch_time": time.perf_counter() - start,
            }
            if self._stepper is not None:
                self._stepper.after_epoch(self.logs)
            # Recorded before the callbacks, so checkpoints they write have it, and again after
            # them, for metrics they added to the logs.
            record_epoch(self.history, self.epoch, self.logs, validated=bool(val_metrics))
            self.callbacks.call("on_epoch_end", self, epoch, train_metrics, val_metrics)
            record_epoch(self.history, self.epoch, self.logs, validated=bool(val_metrics))
            log_epoch(epoch, epochs, self.logs)
            if self.stop_training:
                break
        self.callbacks.call("on_train_end", self)
        return self.history

    def evaluate(self, data_loader: Iterable, return_predictions: bool = False) -> dict[str, Any]:
        """Evaluate the model on ``data_loader``.

        Returns
        -------
        ``{'loss': mean loss, 'rel_l2': mean per-sample relative L2 error, 'n_samples': N}``
        plus loss components; with ``return_predictions`` also ``'predictions'``, a CPU tensor
        of all predictions in loader order.
        """
        return evaluate_loader(
            self._eval_forward, self.model, data_loader, self.device, return_predictions,
            check_input=functools.partial(_check_input, self.unwrapped_model),
        )

    def current_lr(self) -> float:
        """The learning rate of the optimizer's first parameter group."""
        lr = self.optimizer.param_groups[0]["lr"]
        return float(lr.item() if isinstance(lr, torch.Tensor) else lr)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (needs a sized training loader)."""
        try:
            n_batches = len(self.train_loader)
        except TypeError:
            raise TypeError(
                "the training loader has no length, so the steps per epoch are unknown; give the "
                "scheduler an explicit horizon"
            ) from None
        return math.ceil(n_batches / self.config.gradient_accumulation_steps)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, filepath: str, include_optimizer: bool = True) -> None:
        """Write a checkpoint that resumes this run bit-exactly (atomic write).

        It holds the model, the data normalizer (if the training loader had one), optimizer (if
        ``include_optimizer``), scheduler, GradScaler, epoch and step counters, history,
        callback states, RNG states and the config.
        """
        atomic_save(self.checkpoint_state(include_optimizer), filepath)

    def checkpoint_state(self, include_optimizer: bool = True) -> dict[str, Any]:
        """The dict :meth:`save_checkpoint` writes: model, optimizer and :meth:`_training_state`."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.model_state_dict(),
            "model_config": getattr(self.unwrapped_model, "model_config", None),
            "optimizer": self.optimizer.state_dict() if include_optimizer else None,
            **self._training_state(),
        }

    def _training_state(self) -> dict[str, Any]:
        """Everything a checkpoint holds besides the model and the optimizer."""
        callback_state = {key: cb.state_dict() for key, cb in self.callbacks.keyed().items()}
        return {
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "global_batch": self.global_batch,
            "history": {k: list(v) for k, v in self.history.items()},
            "callbacks": {**self._pending_callback_state, **callback_state},
            "rng": capture_rng_state(self._loader_generators()),
            "config": self.config.to_dict(),
            "normalizer": None if self.normalizer is None else self.normalizer.to_state(),
        }

    def load_checkpoint(self, filepath: str, load_optimizer: bool = True) -> dict[str, Any]:
        """Restore a checkpoint written by :meth:`save_checkpoint`.

        Everything is validated before anything is applied: a truncated, foreign or mismatched
        file raises :class:`~nol_fast.training.checkpoint.CheckpointError` and leaves the
        trainer and model untouched. Callback states are applied to the callbacks of the next
        :meth:`train` call (matched by position and class).

        Returns
        -------
        The raw checkpoint dict.
        """
        state = load_checkpoint_file(filepath)
        check_state_dict_fits(self.unwrapped_model, state["model"], str(filepath))
        restore_optimizer = load_optimizer and state["optimizer"] is not None
        if load_optimizer and state["optimizer"] is None:
            logger.warning("%s holds no optimizer state; the optimizer starts fresh", filepath)
        if restore_optimizer:
            check_optimizer_fits(self.optimizer, state["optimizer"], str(filepath))
        normalizer = self._check_training_state(state, str(filepath))

        self.load_model_state_dict(state["model"])
        if restore_optimizer:
            self.optimizer.load_state_dict(state["optimizer"])
        self._restore_training_state(state, normalizer)
        logger.info("resumed from %s after epoch %d", filepath, self.epoch)
        return state

    def _check_training_state(self, state: dict[str, Any], source: str) -> DataNormalizer | None:
        """Check what :meth:`_restore_training_state` applies; returns the saved normalizer.

        Raises :class:`CheckpointError` before anything is applied.
        """
        normalizer = None
        if state.get("normalizer") is not None:
            try:
                normalizer = DataNormalizer.from_state(state["normalizer"])
            except ValueError as error:
                raise CheckpointError(f"{source}: {error}") from None
        generators = self._loader_generators()
        if len(state["rng"].get("generators", [])) != len(generators):
            raise CheckpointError(
                f"{source} holds {len(state['rng']['generators'])} data-loader generator "
                f"state(s) but this trainer's loaders have {len(generators)}; build the loaders "
                f"as in the saved run"
            )
        return normalizer

    def _restore_training_state(
        self, state: dict[str, Any], normalizer: DataNormalizer | None
    ) -> None:
        """Apply a checkpoint's :meth:`_training_state` (checked by
        :meth:`_check_training_state`)."""
        if normalizer is not None:
            self.normalizer = normalizer.to(self.device)
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self._runner = None  # CUDA graphs hold the replaced optimizer state: capture anew
        self.epoch = state["epoch"]
        self.global_step = state["global_step"]
        self.global_batch = state["global_batch"]
        self.history = upgrade_history(state["history"])
        self._pending_callback_state = dict(state["callbacks"])
        self._run_callbacks = []  # the loaded run's callback states are the checkpoint's
        restore_rng_state(state["rng"], self._loader_generators())

    # ------------------------------------------------------------------ the loop
    def _train_epoch(self, epoch: int, epochs: int) -> dict[str, float]:
        model, config = self.model, self.config
        model.train()
        accumulation = config.gradient_accumulation_steps
        n_batches = _safe_len(self.train_loader)
        progress = EpochProgress(epoch, epochs, n_batches)
        runner = self._step_runner()
        totals = runner.totals
        totals.reset()
        # In place under CUDA graphs, which keep the gradients' addresses.
        self.optimizer.zero_grad(set_to_none=not self.fast_paths.cuda_graphs)
        seen = 0
        for batch_idx, batch in self._epoch_batches(epoch):
            if self.callbacks.wants_batch_hooks:
                self.callbacks.call("on_batch_begin", self, batch_idx, batch)
            x, y = (to_device(t, self.device) for t in unpack_batch(batch))
            if batch_idx == 0:
                _check_input(self.unwrapped_model, x)
            # Each optimizer step averages its micro-batches; the epoch's last group may be
            # short (for loaders without a length it is weighted as a full group).
            group_start = batch_idx - batch_idx % accumulation
            remaining = accumulation if n_batches is None else n_batches - group_start
            runner.set_group_size(min(accumulation, remaining))
            end_of_group = (batch_idx + 1) % accumulation == 0 or batch_idx + 1 == n_batches
            with self._gradient_sync(end_of_group):
                loss, components = runner.micro_batch(x, y)
            seen += 1
            self.global_batch += 1
            self.took_optimizer_step = end_of_group
            if end_of_group:
                self._optimizer_step(runner)
            if self.callbacks.wants_batch_hooks:
                self.callbacks.call("on_batch_end", self, batch_idx, {"loss": loss, **components})
            progress.advance()
            if config.log_frequency and (batch_idx + 1) % config.log_frequency == 0:
                # Host sync point: the running loss, and any non-finite value so far.
                progress.show_loss(self._read_totals(epoch, totals).mean_loss)
            if end_of_group and self._stop_requested():
                self.stop_training = True
                break
        if n_batches is None and seen % accumulation and not self.stop_training:
            self._optimizer_step(runner)  # the last partial group of an unsized loader
        progress.close()
        if seen == 0:
            raise ValueError("the training loader yielded no batches")
        reading = self._read_totals(epoch, totals)
        if reading.skipped_batches:
            logger.warning("epoch %d: skipped the optimizer steps of %d batches with a "
                           "non-finite loss or gradient", epoch + 1, reading.skipped_batches)
        return reading.epoch_metrics(with_skipped=config.skip_nonfinite)

    def _step_runner(self) -> TrainStep | GraphedStep:
        """The step's device work, built anew when the optimizer or scaler was replaced."""
        step = getattr(self._runner, "step", self._runner)
        if step is None or step.optimizer is not self.optimizer or step.scaler is not self.scaler:
            graphs = self.fast_paths.cuda_graphs
            step = TrainStep(self._train_loss_fn, self.optimizer, self.scaler,
                             self.config.gradient_clipping, EpochTotals(self.device),
                             keep_grads=graphs)
            self._runner = GraphedStep(step) if graphs else step
        return self._runner

    def _train_loss(self, x: torch.Tensor, y: torch.Tensor
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss and loss components of one training batch (what ``compile`` compiles)."""
        _, loss, components = self._forward_loss(x, y)
        return loss, components

    def _forward_loss(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``(prediction, scalar fp32 loss, detached loss components)`` for one batch."""
        # Under CUDA graphs the autocast cache would free casts that a graph keeps.
        with autocast(self.device, self.amp_dtype, cache_enabled=not self.fast_paths.cuda_graphs):
            pred = self.model(x)
            if self.normalizer is not None:
                pred = self.normalizer.decode_output(pred)
            # Shapes are static to torch.compile, so this check costs a compiled step nothing.
            if pred.shape != y.shape and isinstance(self.loss_fn, nn.MSELoss):
                raise ValueError(
                    f"the model's output shape {tuple(pred.shape)} does not match the target "
                    f"shape {tuple(y.shape)} (input shape {tuple(x.shape)}); check the model's "
                    f"out_channels and the data"
                )
            if self._loss_takes_inputs:
                inputs = x if self.normalizer is None else self.normalizer.decode_input(x)
                loss = self.loss_fn(pred, y, inputs=inputs)
            else:
                loss = self.loss_fn(pred, y)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(
                f"loss_fn must return a scalar tensor, got "
                f"{type(loss).__name__}{tuple(getattr(loss, 'shape', ()))}"
            )
        components = getattr(self.loss_fn, "last_components", None) or {}
        components = {k: v.detach().float() for k, v in components.items()}
        return pred, loss.float().reshape(()), components

    def _optimizer_step(self, runner: TrainStep | GraphedStep) -> None:
        runner.optimizer_step()
        self.global_step += 1
        if self._stepper is not None:
            self._stepper.after_optimizer_step()

    # ------------------------------------------------------------------ hooks of the loop
    # Each is called from one place in the loop and does nothing on one process;
    # DistributedTrainer overrides them.
    def _callback_list(self, callbacks: list[TrainingCallback] | None) -> CallbackList:
        """The dispatcher of a ``train`` call's callbacks."""
        return CallbackList(callbacks)

    def _epoch_batches(self, epoch: int) -> Iterable[tuple[int, Any]]:
        """``(batch index, batch)`` pairs of the training loader for the 0-based ``epoch``.

        A distributed trainer sets its sampler's epoch here, and starts a resumed epoch at
        the batch where it stopped (with the true batch indices).
        """
        return enumerate(self.train_loader)

    def _gradient_sync(self, sync: bool) -> contextlib.AbstractContextManager:
        """Context of a micro-batch's backward; ``sync`` is False for all but the last
        micro-batch of an accumulation group (a data-parallel trainer skips its gradient
        all-reduce there)."""
        return contextlib.nullcontext()

    def _stop_requested(self) -> bool:
        """Checked after each optimizer step: True ends the epoch there (its metrics cover the
        batches trained), validates as usual and stops training. A distributed trainer stops
        at a step all ranks agreed on when it is preempted."""
        return False

    def _read_totals(self, epoch: int, totals: EpochTotals) -> TotalsReading:
        """Read the epoch's sums (a host sync); raise for a non-finite value unless skipping.

        Called at the same batches on every process; a distributed trainer raises on every
        rank when any rank saw a non-finite value.
        """
        reading = totals.read()
        if not self.config.skip_nonfinite:
            reading.raise_if_nonfinite(epoch)
        return reading

    # ------------------------------------------------------------------ validation
    def _validation_metrics(self, epoch: int, epochs: int) -> dict[str, float]:
        """The epoch's validation metrics, or ``{}`` when it does not validate."""
        due = (epoch + 1) % self.config.val_frequency == 0 or epoch + 1 == epochs
        if self.val_loader is None or not due:
            return {}
        result = self.evaluate(self.val_loader)
        result.pop("n_samples")
        return {f"val_{k}": v for k, v in result.items()}

    def _unvalidated_metrics(self) -> dict[str, float]:
        """NaN for each validation metric, logged in epochs that do not validate, so callbacks
        that monitor one see that this epoch has none rather than that the run logs none."""
        if self.val_loader is None:
            return {}
        keys = [k for k in self.history if is_validation_metric(k)]
        return dict.fromkeys(keys or ["val_loss", "val_rel_l2"], math.nan)

    # ------------------------------------------------------------------ schedulers
    def _scheduler_stepper(self) -> SchedulerStepper | None:
        """The stepper of ``self.scheduler``; ``None`` without one, or when a
        :class:`LearningRateScheduler` callback steps it."""
        scheduler = self.scheduler
        if scheduler is None or any(
            isinstance(cb, LearningRateScheduler) and cb.scheduler is scheduler
            for cb in self.callbacks.callbacks
        ):
            return None
        monitor = self.config.monitor
        if self.val_loader is None and monitor.startswith("val_"):
            monitor = "train_" + monitor[4:]
        interval = trainer_interval(scheduler, self.config.scheduler_interval)
        return SchedulerStepper(scheduler, interval, monitor)

    # ------------------------------------------------------------------ bookkeeping
    def _restore_callback_state(self) -> list[TrainingCallback]:
        """Apply checkpointed callback states; returns the callbacks that received one."""
        if not self._pending_callback_state:
            return []
        keyed = self.callbacks.keyed()
        restored = []
        for key, state in self._pending_callback_state.items():
            if key in keyed:
                keyed[key].load_state_dict(state)
                restored.append(keyed[key])
            else:
                logger.warning("no callback matches checkpointed callback state '%s'", key)
        self._pending_callback_state = {}
        return restored

    def _loader_generators(self) -> list[torch.Generator]:
        return loader_generators(self.train_loader, self.val_loader)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _safe_len(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def _accepts_keyword(fn: Callable, name: str) -> bool:
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        return name in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def _check_input(model: nn.Module, x: torch.Tensor) -> None:
    check = getattr(model, "check_input", None)
    if callable(check):
        check(x)
