"""MetricsTracker: keep every epoch metric and summarise it."""

from __future__ import annotations

import math
from typing import Any

from nol_fast.training.callbacks.base import TrainingCallback

#: Metrics where larger is better; every other metric is treated as "smaller is better".
LARGER_IS_BETTER_PREFIXES = ("val_acc", "acc", "val_r2", "r2")


class MetricsTracker(TrainingCallback):
    """Record each epoch's metrics and report statistics.

    Every metric of the epoch logs is tracked: ``train_loss``, ``val_loss``, ``val_rel_l2``,
    loss components, ``lr`` and ``epoch_time``. Epochs that did not validate contribute no
    validation value. An instance reused for a new run starts afresh; one that continues its
    run keeps what it recorded.

    Examples
    --------
    >>> metrics_tracker = MetricsTracker()
    >>> # trainer.train(epochs=10, callbacks=[metrics_tracker])
    >>> # metrics_tracker.get_summary()['val_loss']['best']
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}

    def reset(self) -> None:
        """Forget every recorded value."""
        self.history = {}

    def reset_state(self) -> None:
        self.reset()

    def on_epoch_end(self, trainer, epoch, train_losses, val_losses) -> None:
        for name, value in trainer.logs.items():
            if not math.isnan(value):
                self.history.setdefault(name, []).append(float(value))

    def get_metric_history(self, metric_name: str) -> list[float]:
        """The recorded values of one metric, in epoch order."""
        if metric_name not in self.history:
            raise KeyError(
                f"metric '{metric_name}' was not tracked; tracked metrics: "
                f"{', '.join(sorted(self.history)) or 'none yet'}"
            )
        return list(self.history[metric_name])

    def get_summary(self) -> dict[str, dict[str, float]]:
        """``{metric: {'best', 'mean', 'min', 'max', 'last'}}`` for every tracked metric.

        ``best`` is the minimum, except for accuracy-like metrics (names starting with
        ``acc``/``val_acc``/``r2``/``val_r2``) where it is the maximum.
        """
        summary = {}
        for name, values in self.history.items():
            larger_better = name.startswith(LARGER_IS_BETTER_PREFIXES)
            summary[name] = {
                "best": max(values) if larger_better else min(values),
                "mean": sum(values) / len(values),
                "min": min(values),
                "max": max(values),
                "last": values[-1],
            }
        return summary

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = {k: list(v) for k, v in state["history"].items()}
