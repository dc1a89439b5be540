"""The training history that ``Trainer.train`` returns: one list of values per metric.

Validation metrics (names starting with ``val_``) hold one entry per epoch that validated, and
``history['val_epoch']`` lists those epochs (1-based). With ``val_frequency > 1``,
``min(history['val_loss'])`` is therefore still the best validation loss, as it is in Keras,
which also keeps only validated epochs in its ``val_*`` lists. Every other metric holds one
entry per epoch; an epoch that did not log it (a metric a callback added on resume) holds NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: The history key listing the validated epochs, 1-based.
VAL_EPOCH = "val_epoch"


def is_validation_metric(name: str) -> bool:
    """Whether ``name`` is a validation metric (its history has one entry per validation)."""
    return name.startswith("val_") and name != VAL_EPOCH


def record_epoch(
    history: dict[str, list[float]], epoch: int, logs: Mapping[str, float], validated: bool
) -> None:
    """Write ``logs`` as the history entry of ``epoch`` (1-based), in place.

    Recording the same epoch again overwrites its entry, so metrics that callbacks add to the
    logs can be recorded after the callbacks ran.

    Examples
    --------
    >>> history = {}
    >>> record_epoch(history, 1, {"train_loss": 0.5, "val_loss": math.nan}, validated=False)
    >>> record_epoch(history, 2, {"train_loss": 0.4, "val_loss": 0.3}, validated=True)
    >>> history
    {'train_loss': [0.5, 0.4], 'val_epoch': [2], 'val_loss': [0.3]}
    """
    rows = {False: epoch - 1}  # row of this epoch in per-epoch columns
    if validated:
        val_epochs = history.setdefault(VAL_EPOCH, [])
        if not val_epochs or val_epochs[-1] != epoch:
            val_epochs.append(epoch)
        rows[True] = len(val_epochs) - 1  # ... and in validation columns
    names = [name for name in history if name != VAL_EPOCH]
    names += [name for name in logs if name not in history]
    for name in names:
        is_val = is_validation_metric(name)
        if is_val and not validated:
            continue
        _put(history.setdefault(name, []), rows[is_val], float(logs.get(name, math.nan)))


def _put(column: list[float], row: int, value: float) -> None:
    """Set ``column[row]``, padding the rows before it with NaN."""
    column.extend([math.nan] * (row - len(column)))
    if row < len(column):
        column[row] = value
    else:
        column.append(value)
