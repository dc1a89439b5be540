"""Training progress: a bar per epoch on a terminal, one log line per epoch otherwise."""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

from nol_fast.progress import open_bar, shows_progress

logger = logging.getLogger("nol_fast.training")


def ensure_log_output(level: int | None = None) -> None:
    """Show nol_fast's messages on stderr when the application configured no logging.

    Libraries normally stay silent, but training progress is output people expect. If the
    application (or the root logger) has handlers, their configuration wins. ``level`` sets the
    package logger's level (default: INFO unless the application set one).
    """
    package_logger = logging.getLogger("nol_fast")
    if not package_logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        package_logger.addHandler(handler)
    if level is not None:
        package_logger.setLevel(level)
    elif package_logger.level == logging.NOTSET:
        package_logger.setLevel(logging.INFO)


def format_metrics(logs: dict[str, float]) -> str:
    """``'train_loss=0.0123 val_loss=0.0145 ...'``; metrics not computed this epoch are left out."""
    parts = []
    for name, value in logs.items():
        if isinstance(value, float) and math.isnan(value):
            continue
        parts.append(f"{name}={value:.3g}s" if name == "epoch_time" else f"{name}={value:.4g}")
    return " ".join(parts)


class EpochProgress:
    """A bar for one epoch when stderr is a terminal (:func:`nol_fast.progress.shows_progress`).

    The bar advances per batch without reading anything from the device; the running loss is
    shown only when the loop has read it anyway (every ``log_frequency`` batches).
    """

    def __init__(self, epoch: int, epochs: int, total: int | None) -> None:
        self.bar: Any = None
        if shows_progress(None):
            self.bar = open_bar(total, f"epoch {epoch + 1}/{epochs}", leave=False)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def show_loss(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def log_epoch(epoch: int, epochs: int, logs: dict[str, float]) -> None:
    """One line per epoch: ``epoch 3/10 train_loss=... val_loss=... lr=... epoch_time=...``."""
    logger.info("epoch %d/%d %s", epoch + 1, epochs, format_metrics(logs))
