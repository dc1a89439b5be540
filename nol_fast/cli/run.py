"""Build and run an experiment from a :class:`~nol_fast.config.Config` (``nol-fast train``)."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nol_fast.config import Config
from nol_fast.data import create_data_loader
from nol_fast.models import create_model
from nol_fast.plotting import plot_training_report
from nol_fast.training import Trainer
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


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (model initialisation, dropout)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_trainer(config: Config, device: torch.device) -> Trainer:
    """Model, loaders, optimizer and scheduler from the config, assembled into a Trainer."""
    training = config.training
    if training.seed is not None:
        seed_everything(training.seed)
    data = {"batch_size": training.batch_size, **config.data.to_dict()}
    model = create_model(config.model.get("model_type", "fno"), config.model.to_dict())
    optimizer = create_optimizer(
        model.parameters(), training.optimizer, training.learning_rate, training.weight_decay
    )
    scheduler = create_scheduler(optimizer, training.scheduler, training.warmup_steps)
    return Trainer(
        model=model,
        train_loader=create_data_loader(data, split="train"),
        val_loader=create_data_loader(data, split="val"),
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_from_config(training.loss),
        device=device,
        config=training,
    )


def run_experiment(
    config: Config, out_dir: str | Path, device: torch.device, resume: bool = False
) -> RunResult:
    """Train as configured, writing checkpoints, TensorBoard logs, a PNG report and the config.

    Files in ``out_dir``: ``config.yaml``, ``checkpoints/last.pt`` (every epoch, for
    ``--resume``), ``checkpoints/best.pt`` (best validation loss),
    ``checkpoints/epoch_NNN.pt`` (every ``save_frequency`` epochs), ``tensorboard/`` and
    ``report.png``.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    trainer = build_trainer(config, device)
    last = ckpt_dir / "last.pt"
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint to resume from at {last}")
        trainer.load_checkpoint(str(last))
    elif last.is_file():
        logger.warning(
            "%s already holds a run; starting afresh and overwriting its checkpoints "
            "(--resume continues it instead)", out_dir,
        )
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
        type(trainer.model).__name__, config.data.get("dataset"),
        sum(p.numel() for p in trainer.model.parameters()), device, training.epochs,
    )
    history = trainer.train(epochs=training.epochs, callbacks=callbacks)

    test_data = {"batch_size": training.batch_size, **config.data.to_dict()}
    test_loader = create_data_loader(test_data, split="test")
    test_metrics = trainer.evaluate(test_loader, return_predictions=True)
    x, y = next(iter(test_loader))
    if trainer.normalizer is not None:  # show the input in physical units
        x = trainer.normalizer.decode_input(x.to(trainer.device)).cpu()
    plot_training_report(
        history, x[0], y[0], test_metrics.pop("predictions")[0], out_dir / "report.png"
    )
    return RunResult(history, test_metrics, out_dir, time.perf_counter() - start)
