"""DistributedTrainer: the Trainer across processes and nodes (torchrun, NCCL or gloo).

Each process runs the Trainer's loop on its share of every batch. What changes from one process:

- **Process group.** Settings not given are read from torchrun's environment, and given ones
  must agree with it (:mod:`nol_fast.distributed.process_group`); each process trains on the
  GPU of its local rank. A group the trainer created, it destroys (:meth:`close`, or at exit).
- **Model.** A :class:`~nol_fast.distributed.strategies.ParallelismStrategy` (``ddp``, ``fsdp``,
  ``hsdp``, ``none``) wraps or shards the model; an optimizer built on the model's parameters
  beforehand is moved onto the parameters the strategy made.
- **Data.** The training loader is rebuilt around a distributed sampler whose epoch is set
  every epoch; its ``batch_size`` is per rank. Validation (and :meth:`evaluate`) splits the
  loader into one block per rank.
- **Metrics.** The epoch's training means and the validation metrics are combined over all
  ranks, weighted by batches and samples, so every rank's history is the same (``epoch_time``
  and ``peak_memory_gb`` stay each rank's own measurements). Callbacks see the same metrics on
  every rank and take the same decisions; a stop on any rank stops all; writers
  (``TensorBoardLogger``) run on global rank 0 only.
- **Checkpoints.** ``ddp`` and ``none``: one portable file, written by global rank 0, that a
  one-process Trainer loads. ``fsdp`` and ``hsdp``: a directory of shards
  (:mod:`nol_fast.distributed.checkpoints`), resumable on any number of ranks and
  consolidated into one file by ``nol-fast checkpoint consolidate``.
- **Preemption.** With ``preemption_checkpoint``, SIGTERM or SIGUSR1 makes all ranks stop at
  the same step, save a checkpoint there (mid-epoch) and exit with ``128 + signal``; loading it
  continues the epoch where it stopped (:mod:`nol_fast.distributed.preemption`).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import logging
import math
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nol_fast.data.normalization import DataNormalizer
from nol_fast.distributed import collectives
from nol_fast.distributed.amp import RankConsistentGradScaler, agree_on_autocast_dtype
from nol_fast.distributed.callbacks import DistributedCallbackList
from nol_fast.distributed.checkpoints import (
    is_sharded_checkpoint,
    load_sharded,
    read_trainer_state,
    save_sharded,
)
from nol_fast.distributed.evaluation import evaluate_sharded
from nol_fast.distributed.preemption import PreemptionWatch, TrainingPreempted
from nol_fast.distributed.process_group import (
    join_process_group,
    leave_process_group,
    resolve_device,
    resolve_settings,
)
from nol_fast.distributed.sampling import distributed_train_loader
from nol_fast.distributed.strategies import ParallelismStrategy, create_parallelism_strategy
from nol_fast.serialization import atomic_save
from nol_fast.training.callbacks.base import CallbackList, TrainingCallback
from nol_fast.training.checkpoint import CheckpointError, restore_rng_state
from nol_fast.training.config import TrainingConfig
from nol_fast.training.totals import LOSS, EpochTotals, NonFiniteLossError, TotalsReading
from nol_fast.training.trainer import Trainer

logger = logging.getLogger(__name__)

#: Trainers not closed yet; the interpreter closes them at exit (see DistributedTrainer.close).
_OPEN_TRAINERS: weakref.WeakSet[DistributedTrainer] = weakref.WeakSet()


@atexit.register
def _close_open_trainers() -> None:
    for trainer in list(_OPEN_TRAINERS):
        trainer.close()


class DistributedTrainer(Trainer):
    """Trainer for multiple processes and nodes.

    Parameters
    ----------
    model, train_loader, val_loader, optimizer, scheduler, loss_fn, device, config
        As for :class:`~nol_fast.training.Trainer`. The loaders must be ``DataLoader`` s over
        map-style datasets; ``train_loader``'s batch size is per rank, so a step trains on
        ``world_size × batch_size`` samples. ``device`` defaults to the GPU of the local rank
        (the CPU without CUDA). An ``optimizer`` must not have stepped yet.
    world_size, rank, local_rank
        Total processes, this process's rank, and its rank within its node; read from the
        torchrun environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) when not given. Given
        values must agree with the environment and with an initialised process group.
    backend
        ``'nccl'`` (default with CUDA) or ``'gloo'`` (default on the CPU).
    init_method
        Process-group initialisation (default ``'env://'``: ``MASTER_ADDR``/``MASTER_PORT``,
        set by torchrun). Ignored when a process group is already initialised.
    strategy
        A :class:`~nol_fast.distributed.strategies.ParallelismStrategy` from
        :func:`~nol_fast.distributed.strategies.create_parallelism_strategy`; default ``ddp``
        (``none`` for one process).
    preemption_checkpoint
        Where all ranks save together when SIGTERM or SIGUSR1 arrives (a file, or a directory
        for ``fsdp``/``hsdp``); None leaves the signals' default action (the process ends).
    timeout
        Seconds after which a collective that waits for a lost rank fails (torch's default:
        10 minutes for NCCL, 30 for gloo).

    Examples
    --------
    Under ``torchrun --nproc_per_node 4 train.py``:

    >>> strategy = create_parallelism_strategy({"strategy": "fsdp"}, world_size=4)
    ...  # doctest: +SKIP
    >>> trainer = DistributedTrainer(model=model, train_loader=train_loader,
    ...                              val_loader=val_loader, optimizer=optimizer,
    ...                              strategy=strategy,
    ...                              preemption_checkpoint="ckpt/last")  # doctest: +SKIP
    >>> history = trainer.train(epochs=100)  # doctest: +SKIP
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
        world_size: int | None = None,
        rank: int | None = None,
        local_rank: int | None = None,
        backend: str | None = None,
        init_method: str | None = None,
        strategy: ParallelismStrategy | None = None,
        *,
        preemption_checkpoint: str | Path | None = None,
        timeout: float | datetime.timedelta | None = None,
    ):
        settings = resolve_settings(world_size, rank, local_rank, backend, init_method)
        device = resolve_device(device, settings.local_rank)
        if strategy is None:
            strategy = create_parallelism_strategy(None, settings.world_size)
        if not isinstance(strategy, ParallelismStrategy):
            raise TypeError(f"strategy must be a ParallelismStrategy (see "
                            f"create_parallelism_strategy), got {type(strategy).__name__}")
        if strategy.world_size != settings.world_size:
            raise ValueError(f"the strategy was made for world_size={strategy.world_size}, but "
                             f"this run has world_size={settings.world_size}")
        self.settings = settings
        self.world_size, self.rank = settings.world_size, settings.rank
        self.local_rank = settings.local_rank
        self.strategy = strategy
        self.preemption_checkpoint = (None if preemption_checkpoint is None
                                      else str(preemption_checkpoint))
        self._owns_process_group = join_process_group(settings, device, timeout)
        if self._owns_process_group:  # also when this trainer is collected without close()
            atexit.register(leave_process_group)
        self._control_group: Any = None
        _OPEN_TRAINERS.add(self)
        try:
            self._control_group = collectives.new_control_group()
            names = {id(p): name for name, p in model.named_parameters()}
            seed = collectives.gather(_loader_seed(train_loader), self._control)[0]
            train_loader = distributed_train_loader(train_loader, self.world_size, self.rank,
                                                    seed)
            super().__init__(model, train_loader, val_loader, optimizer, scheduler, loss_fn,
                             device, config)
            if optimizer is not None:
                self._rebind_optimizer(names)
            self.amp_dtype = agree_on_autocast_dtype(self.amp_dtype, self._control)
            self.scaler = RankConsistentGradScaler(self.device.type,
                                                   enabled=self.amp_dtype == torch.float16)
        except BaseException:
            self.close()
            raise
        self._watch: PreemptionWatch | None = None
        self._resume: dict[str, Any] | None = None  # where a mid-epoch checkpoint stopped
        self._epoch_start: dict[str, Any] | None = None  # ... when this epoch resumes there
        self._position: dict[str, Any] | None = None  # where this run stopped, when preempted
        self._batches_run = 0  # batches of the current epoch run by this train call
        logger.info("rank %d of %d on %s: %r", self.rank, self.world_size, self.device,
                    self.strategy)

    # ------------------------------------------------------------------ process group
    def close(self) -> None:
        """Destroy this trainer's control group, and the default process group if this
        trainer created it (idempotent; also run at interpreter exit for an open trainer).

        The control group's collectives pass tensors that Python frees as soon as they
        return, while a gloo worker thread may still hold them: it takes the GIL to free
        them. Should the interpreter be finalizing by then, that thread is stopped inside a
        destructor and the process aborts ("terminate called without an active exception").
        The trainer holds the only reference to the group (everything else looks it up through
        :attr:`_control`), so releasing it here destroys the group at once, and its destructor
        joins those threads while the interpreter is alive.
        """
        _OPEN_TRAINERS.discard(self)
        control, self._control_group = getattr(self, "_control_group", None), None
        if control is not None and dist.is_initialized():
            # ValueError: the default group was destroyed (and made anew) meanwhile
            with contextlib.suppress(ValueError):
                dist.destroy_process_group(control)
        if getattr(self, "_owns_process_group", False):
            leave_process_group()
            self._owns_process_group = False

    @property
    def _control(self) -> Any:
        """The gloo group of host-side agreements (:mod:`nol_fast.distributed.collectives`)."""
        if self._control_group is None:
            raise RuntimeError("this DistributedTrainer is closed: its process groups are "
                               "destroyed")
        return self._control_group

    def __enter__(self) -> DistributedTrainer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ placement
    def place_model(self, model: nn.Module) -> nn.Module:
        """Wrap or shard the model with the strategy, on this rank's device."""
        return self.strategy.wrap(model, self.device)

    @property
    def unwrapped_model(self) -> nn.Module:
        return self.strategy.unwrap(self.model)

    def model_state_dict(self) -> dict[str, Any]:
        """The full weights under the model's own names (a collective under ``fsdp``/``hsdp``,
        whose other ranks get an empty dict)."""
        return self.strategy.full_state_dict(self.model)

    def load_model_state_dict(self, state: dict[str, Any]) -> None:
        """Load full weights (a collective under ``fsdp``/``hsdp``: global rank 0's are used)."""
        self.strategy.load_full_state_dict(self.model, state)

    def save_weights(self, filepath: str) -> None:
        """Global rank 0 writes the full weights (every rank calls this)."""
        state = self.model_state_dict()
        if self.rank == 0:
            atomic_save(state, filepath)
        dist.barrier(group=self._control)

    def _rebind_optimizer(self, names: dict[int, str]) -> None:
        """Point the optimizer's groups at the parameters the strategy placed (FSDP2 makes new,
        sharded ones); it must not hold state yet."""
        if self.optimizer.state:
            raise ValueError("the optimizer has already taken steps; build it on the model's "
                             "parameters and give it to DistributedTrainer before training")
        placed = self.strategy.portable_parameters(self.model)
        for group in self.optimizer.param_groups:
            unknown = [p for p in group["params"] if id(p) not in names]
            if unknown:
                raise ValueError(f"the optimizer holds {len(unknown)} tensor(s) that are not "
                                 f"parameters of the model; build it on model.parameters()")
            group["params"] = [placed[names[id(p)]] for p in group["params"]]

    # ------------------------------------------------------------------ training
    def train(
        self, epochs: int, callbacks: list[TrainingCallback] | None = None
    ) -> dict[str, list[float]]:
        """As :meth:`Trainer.train`, on all ranks together.

        Raises
        ------
        RuntimeError
            When the trainer is closed (:meth:`close`).
        TrainingPreempted
            When a SIGTERM or SIGUSR1 arrived and ``preemption_checkpoint`` is set: after all
            ranks saved it. Uncaught, it exits the process with status ``128 + signal``.
        """
        control = self._control  # a closed trainer raises here, before anything runs
        if self.preemption_checkpoint is None:
            return super().train(epochs, callbacks)
        with PreemptionWatch(control) as watch:
            self._watch = watch
            try:
                return super().train(epochs, callbacks)
            finally:
                self._watch = None

    def evaluate(self, data_loader: Iterable, return_predictions: bool = False) -> dict[str, Any]:
        """As :meth:`Trainer.evaluate`, each rank on a block of the loader; every rank gets
        the metrics (and predictions) of the whole loader. All ranks call it together."""
        return evaluate_sharded(
            self._forward_loss, self.model, data_loader, self.device, self._control,
            self.strategy.lockstep_forward(self.model), return_predictions,
        )

    def _train_epoch(self, epoch: int, epochs: int) -> dict[str, float]:
        resume, self._resume = self._resume, None
        self._epoch_start = resume if resume is not None and resume["epoch"] == epoch else None
        metrics = super()._train_epoch(epoch, epochs)
        skipped = metrics.pop("skipped_steps", None)  # the same on every rank (steps agreed)
        weight = self._batches_run - (skipped or 0)
        means, total = collectives.weighted_means(metrics, weight, self._control)
        start = self._epoch_start
        if start is not None:  # the part of this epoch run before the checkpoint
            means = _merge_means(start["train_metrics"], start["weight"], means, total)
            total += start["weight"]
            skipped = None if skipped is None else skipped + start["skipped"]
        if skipped is not None:
            means["skipped_steps"] = skipped
        if self._watch is not None and self._watch.agreed:
            self._save_preempted(epoch, means, total, skipped or 0.0)
        return means

    def _save_preempted(self, epoch: int, metrics: dict[str, float], weight: float,
                        skipped: float) -> None:
        start = 0 if self._epoch_start is None else self._epoch_start["batch"]
        done = start + self._batches_run
        self._position = {
            "epoch": epoch, "batch": done, "world_size": self.world_size,
            "batch_size": self.train_loader.batch_size, "train_metrics": metrics,
            "weight": weight, "skipped": skipped,
        }
        self.save_checkpoint(self.preemption_checkpoint)
        raise TrainingPreempted(self._watch.agreed, self.preemption_checkpoint, epoch, done)

    # ------------------------------------------------------------------ hooks of the loop
    def _callback_list(self, callbacks: list[TrainingCallback] | None) -> CallbackList:
        return DistributedCallbackList(callbacks, self.rank == 0)

    def _epoch_batches(self, epoch: int) -> Iterator[tuple[int, Any]]:
        loader = self.train_loader
        loader.sampler.set_epoch(epoch)
        start = 0 if self._epoch_start is None else self._epoch_start["batch"]
        if start:
            loader.sampler.skip(start * loader.batch_size)
        batches = iter(loader)
        if start:
            # Making the iterator drew a worker seed from the RNG; the checkpoint's RNG state
            # was captured after that draw, in the interrupted run.
            restore_rng_state(self._epoch_start["rng"], self._loader_generators())
        self._batches_run = 0
        for batch_idx, batch in enumerate(batches, start):
            self._batches_run += 1
            yield batch_idx, batch

    def _gradient_sync(self, sync: bool) -> Any:
        return self.strategy.gradient_sync(self.model, sync)

    def _stop_requested(self) -> bool:
        return self._watch is not None and self._watch.poll()

    def _read_totals(self, epoch: int, totals: EpochTotals) -> TotalsReading:
        reading = totals.read()
        if not self.config.skip_nonfinite:
            # Every rank reads at the same batches: all raise, for the earliest bad batch.
            first = (reading.first_bad_batch, reading.first_bad_kind)
            bad = [b for b in collectives.gather(first, self._control) if b[0] is not None]
            if bad:
                batch, kind = min(bad)
                raise NonFiniteLossError(epoch, batch, "loss" if kind == LOSS else "gradient")
        return reading

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, filepath: str, include_optimizer: bool = True) -> None:
        """Save together (every rank calls this): one file written by global rank 0, or a
        directory of shards under ``fsdp``/``hsdp``."""
        if self.strategy.sharded_checkpoints:
            state = {"model_config": getattr(self.unwrapped_model, "model_config", None),
                     **self._training_state()}
            optimizer = self.optimizer if include_optimizer else None
            save_sharded(filepath, self.model, optimizer, state, self._control)
            return
        state = self.checkpoint_state(include_optimizer)
        if self.rank == 0:
            atomic_save(state, filepath)
        dist.barrier(group=self._control)

    def load_checkpoint(self, filepath: str, load_optimizer: bool = True) -> dict[str, Any]:
        """Restore a checkpoint on every rank (all call this): a file under ``ddp``/``none``, a
        directory of shards under ``fsdp``/``hsdp`` (on any number of ranks). A checkpoint a
        preempted run saved mid-epoch continues that epoch, on as many ranks with the same
        batch size."""
        path = Path(filepath)
        if not self.strategy.sharded_checkpoints:
            if is_sharded_checkpoint(path):
                raise CheckpointError(
                    f"{path} is a sharded checkpoint (fsdp/hsdp); the {self.strategy.name} "
                    f"strategy loads one file: run 'nol-fast checkpoint consolidate {path} "
                    f"OUT.pt' and load OUT.pt"
                )
            return super().load_checkpoint(filepath, load_optimizer)
        if path.is_file():
            raise CheckpointError(
                f"{path} is a one-file checkpoint; the {self.strategy.name} strategy resumes "
                f"from the sharded checkpoints (directories) it writes"
            )
        state = read_trainer_state(path)
        normalizer = self._check_training_state(state, str(path))
        loaded = load_sharded(path, self.model, self.optimizer if load_optimizer else None,
                              self._control)
        if load_optimizer and not loaded:
            logger.warning("%s holds no optimizer state; the optimizer starts fresh", path)
        self._restore_training_state(state, normalizer)
        logger.info("resumed from %s after epoch %d", path, self.epoch)
        return state

    def _training_state(self) -> dict[str, Any]:
        state = super()._training_state()
        state["distributed"] = {
            "world_size": self.world_size,
            "strategy": self.strategy.name,
            "rng": collectives.gather(state["rng"], self._control),  # every rank's
            "position": self._position,
        }
        return state

    def _check_training_state(self, state: dict[str, Any], source: str) -> DataNormalizer | None:
        normalizer = super()._check_training_state(state, source)
        position = (state.get("distributed") or {}).get("position")
        if position is not None:
            here = (self.world_size, self.train_loader.batch_size)
            saved = (position["world_size"], position["batch_size"])
            if here != saved:
                raise CheckpointError(
                    f"{source} was saved in the middle of epoch {position['epoch'] + 1} by "
                    f"{saved[0]} ranks with batch size {saved[1]}; it continues that epoch "
                    f"only on as many ranks with that batch size, not {here[0]} with {here[1]}"
                )
        return normalizer

    def _restore_training_state(
        self, state: dict[str, Any], normalizer: DataNormalizer | None
    ) -> None:
        super()._restore_training_state(state, normalizer)
        info = state.get("distributed") or {}
        per_rank = info.get("rng")
        rng = state["rng"]
        if per_rank is not None and len(per_rank) == self.world_size:
            rng = per_rank[self.rank]
            restore_rng_state(rng, self._loader_generators())
        position = info.get("position")
        self._resume = None if position is None else {**position, "rng": rng}
        self._position = None


def _loader_seed(loader: Any) -> int:
    """The seed of a loader's shuffling generator (0 without one)."""
    for generator in (getattr(loader, "generator", None),
                      getattr(getattr(loader, "sampler", None), "generator", None)):
        if generator is not None:
            return int(generator.initial_seed())
    return 0


def _merge_means(first: dict[str, float], first_weight: float, second: dict[str, float],
                 second_weight: float) -> dict[str, float]:
    """Weighted means of two parts of an epoch (a metric missing from one part counts the
    other's alone)."""
    merged = {}
    for name in dict.fromkeys([*first, *second]):
        parts = [(values[name], weight) for values, weight in
                 ((first, first_weight), (second, second_weight))
                 if name in values and weight > 0 and not math.isnan(values[name])]
        weight = sum(w for _, w in parts)
        merged[name] = sum(v * w for v, w in parts) / weight if weight else math.nan
    return merged
