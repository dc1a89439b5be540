"""Build and run an experiment from a :class:`~nol_fast.config.Config` (``nol-fast train``).

Under torchrun (``torchrun --nproc_per_node N -m nol_fast train ...``) every process builds a
:class:`~nol_fast.training.DistributedTrainer` with the strategy of the config's
``parallelism`` section; global rank 0 generates the data set first (the others then read the
cache) and alone writes the config, the report and the printed summary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nol_fast.config import Config
from nol_fast.data import create_data_loader
from nol_fast.distributed import process_group
from nol_fast.distributed.strategies import create_parallelism_strategy
from nol_fast.models import create_model
from nol_fast.plotting import plot_training_report
from nol_fast.training import DistributedTrainer, Trainer
from nol_fast.training.callbacks import (
    EarlyStopping,
    MetricsTracker,
    ModelCheckpoint,
    TensorBoardLogger,
)
from nol_fast.training.losses import loss_from_config
from nol_fast.training.optimizers import create_optimizer, create_scheduler

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run produced: its history, metrics and the files it wrote."""

    history: dict[str, list[float]]
    test_metrics: dict[str, Any]
    out_dir: Path
    seconds: float
    rank: int = 0  # global rank of this process (0 without torchrun)

    @property
    def best_val_rel_l2(self) -> float:
        return min(self.history["val_rel_l2"])

    @property
    def final_val_rel_l2(self) -> float:
        return self.history["val_rel_l2"][-1]


def resolve_device(name: str | None) -> torch.device:
    """``'auto'``/``None`` picks CUDA when available; anything else is passed to torch."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' was requested but CUDA is not available")
    return device


def launched_by_torchrun() -> bool:
    """Whether this process is a torchrun worker (torchrun sets ``LOCAL_RANK`` and
    ``WORLD_SIZE``)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def training_device(name: str | None) -> torch.device:
    """:func:`resolve_device`, or under torchrun the device of the local rank (``'auto'``:
    its GPU, or the CPU)."""
    if not launched_by_torchrun():
        return resolve_device(name)
    local_rank = process_group.resolve_settings().local_rank
    return process_group.resolve_device(None if name in (None, "auto") else name, local_rank)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (model initialisation, dropout)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_trainer(config: Config, device: torch.device,
                  preemption_checkpoint: str | None = None) -> Trainer:
    """Model, loaders, optimizer and scheduler from the config, assembled into a Trainer.

    Under torchrun it is a :class:`DistributedTrainer` with the strategy of
    ``config.parallelism`` that saves to ``preemption_checkpoint`` when preempted; the process
    group must be initialised (:func:`run_experiment` does it).
    """
    training = config.training
    if training.seed is not None:
        seed_everything(training.seed)
    data = {"batch_size": training.batch_size, **config.data.to_dict()}
    model = create_model(config.model.get("model_type", "fno"), config.model.to_dict())
    optimizer = create_optimizer(
        model.parameters(), training.optimizer, training.learning_rate, training.weight_decay
    )
    scheduler = create_scheduler(optimizer, training.scheduler, training.warmup_steps)
    distributed = launched_by_torchrun()
    # The first call may generate and cache the data set: rank 0 does it alone.
    with process_group.main_process_first() if distributed else contextlib.nullcontext():
        train_loader = create_data_loader(data, split="train")
        val_loader = create_data_loader(data, split="val")
    parts = dict(model=model, train_loader=train_loader, val_loader=val_loader,
                 optimizer=optimizer, scheduler=scheduler, loss_fn=loss_from_config(training.loss),
                 device=device, config=training)
    if not distributed:
        return Trainer(**parts)
    strategy = create_parallelism_strategy(config.parallelism, int(os.environ["WORLD_SIZE"]))
    return DistributedTrainer(**parts, strategy=strategy,
                              preemption_checkpoint=preemption_checkpoint)


def run_experiment(
    config: Config, out_dir: str | Path, device: torch.device, resume: bool | str = False
) -> RunResult:
    """Train as configured, writing checkpoints, TensorBoard logs, a PNG report and the config.

    Files in ``out_dir``: ``config.yaml``, ``checkpoints/last.pt`` (every epoch, for
    ``--resume``), ``checkpoints/best.pt`` (best validation loss),
    ``checkpoints/epoch_NNN.pt`` (every ``save_frequency`` epochs), ``tensorboard/`` and
    ``report.png``. Under the fsdp and hsdp strategies each checkpoint is a directory of
    shards.

    ``resume``: True continues from ``checkpoints/last.pt`` (which must exist); ``'auto'``
    continues from it when it exists and starts afresh otherwise. A run that torchrun
    restarts after a failure always continues from it. Under torchrun a SIGTERM or SIGUSR1
    makes all ranks save ``checkpoints/last.pt`` at the same step and exit with status
    ``128 + signal``.
    """
    if not launched_by_torchrun():
        return _run(config, Path(out_dir), device, resume)
    settings = process_group.resolve_settings()
    created = process_group.join_process_group(settings, device)
    try:
        if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0 and resume is False:
            resume = "auto"  # a restart continues the failed attempt
        return _run(config, Path(out_dir), device, resume, rank=settings.rank)
    finally:
        if created:
            process_group.leave_process_group()


def _run(config: Config, out_dir: Path, device: torch.device, resume: bool | str,
         rank: int = 0) -> RunResult:
    start = time.perf_counter()
    ckpt_dir = out_dir / "checkpoints"
    last = ckpt_dir / "last.pt"
    trainer = build_trainer(config, device, preemption_checkpoint=str(last))
    if resume is True and not last.exists():
        raise FileNotFoundError(f"--resume: no checkpoint to resume from at {last}")
    if resume and last.exists():
        trainer.load_checkpoint(str(last))
    elif last.exists() and rank == 0:
        logger.warning(
            "%s already holds a run; starting afresh and overwriting its checkpoints "
            "(--resume continues it instead)", out_dir,
        )
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        config.save(out_dir / "config.yaml")

    training = config.training
    callbacks = [
        EarlyStopping(
            patience=training.early_stopping_patience, monitor="val_loss",
            restore_best_weights=True,
        ),
        ModelCheckpoint(str(ckpt_dir / "best.pt"), monitor="val_loss", save_best_only=True),
        ModelCheckpoint(str(ckpt_dir / "epoch_{epoch:03d}.pt"), period=training.save_frequency),
        MetricsTracker(),
        TensorBoardLogger(str(out_dir / "tensorboard"), log_frequency=50),
        # Last, so the resumable checkpoint holds every other callback's updated state.
        ModelCheckpoint(str(last)),
    ]
    logger.info(
        "training %s on %s (%d parameters) on %s for %d epochs",
        type(trainer.unwrapped_model).__name__, config.data.get("dataset"),
        sum(p.numel() for p in trainer.unwrapped_model.parameters()), device, training.epochs,
    )
    history = trainer.train(epochs=training.epochs, callbacks=callbacks)

    test_data = {"batch_size": training.batch_size, **config.data.to_dict()}
    test_loader = create_data_loader(test_data, split="test")
    test_metrics = trainer.evaluate(test_loader, return_predictions=True)
    predictions = test_metrics.pop("predictions")
    if rank == 0:
        x, y = next(iter(test_loader))
        if trainer.normalizer is not None:  # show the input in physical units
            x = trainer.normalizer.decode_input(x.to(trainer.device)).cpu()
        plot_training_report(history, x[0], y[0], predictions[0], out_dir / "report.png")
    return RunResult(history, test_metrics, out_dir, time.perf_counter() - start, rank)
