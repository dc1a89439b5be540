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


def upgrade_history(history: Mapping[str, list[float]]) -> dict[str, list[float]]:
    """A copy of a checkpoint's history, in the layout :func:`record_epoch` writes.

    Checkpoints written before validation columns held validated epochs only have one entry per
    epoch in every column, NaN where an epoch did not validate. Their validation columns are cut
    down to the validated epochs (those with any validation value) and ``val_epoch`` is added, so
    a run resumed from such a checkpoint goes on in one layout.

    Examples
    --------
    >>> nan = math.nan
    >>> upgrade_history({"train_loss": [3.0, 2.0, 1.0], "val_loss": [nan, 2.5, 1.5]})
    {'train_loss': [3.0, 2.0, 1.0], 'val_loss': [2.5, 1.5], 'val_epoch': [2, 3]}
    """
    history = {name: list(values) for name, values in history.items()}
    val_names = [name for name in history if is_validation_metric(name)]
    if VAL_EPOCH in history or not val_names:
        return history
    n_epochs = max(len(history[name]) for name in val_names)
    rows = [
        row for row in range(n_epochs)
        if any(row < len(history[name]) and not math.isnan(history[name][row])
               for name in val_names)
    ]
    for name in val_names:
        column = history[name]
        history[name] = [column[row] if row < len(column) else math.nan for row in rows]
    history[VAL_EPOCH] = [row + 1 for row in rows]
    return history


def _put(column: list[float], row: int, value: float) -> None:
    """Set ``column[row]``, padding the rows before it with NaN."""
    column.extend([math.nan] * (row - len(column)))
    if row < len(column):
        column[row] = value
    else:
        column.append(value)
