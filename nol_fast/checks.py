"""Checks of numeric arguments, shared by the training API, its config and the schedulers.

An integer argument takes any :class:`numbers.Integral` (``int``, ``numpy.int64``...) and a real
argument any :class:`numbers.Real` (``float``, ``int``, ``numpy.float32``...); ``bool`` is
neither, since ``epochs=True`` is a mistake rather than a number. The checks return plain Python
``int`` and ``float``, so configs, optimizer param groups and checkpoints hold plain data: a
NumPy scalar in a checkpoint would make ``torch.load(..., weights_only=True)`` refuse the file,
and YAML's safe dumper refuses it too.
"""

from __future__ import annotations

import numbers
from typing import Any


def as_int(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as a Python ``int``, or a ``ValueError`` naming ``name`` and the value.

    Parameters
    ----------
    value
        Any :class:`numbers.Integral` except ``bool``.
    name
        The argument's name, for the error message.
    minimum
        Smallest accepted value; ``None`` for no bound.

    Examples
    --------
    >>> import numpy as np
    >>> as_int(np.int64(5), "epochs", minimum=1)
    5
    >>> as_int(0, "epochs", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: epochs must be a positive integer, got 0
    """
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if is_int and (minimum is None or value >= minimum):
        return int(value)
    if minimum == 1:
        wanted = "a positive integer"
    elif minimum is None:
        wanted = "an integer"
    else:
        wanted = f"an integer >= {minimum}"
    raise ValueError(f"{name} must be {wanted}, got {value!r}")


def as_real(value: Any, name: str, minimum: float | None = None) -> float:
    """``value`` as a Python ``float``, or a ``ValueError`` naming ``name`` and the value.

    Parameters
    ----------
    value
        Any :class:`numbers.Real` except ``bool``.
    name
        The argument's name, for the error message.
    minimum
        Smallest accepted value (inclusive); ``None`` for no bound.

    Examples
    --------
    >>> import numpy as np
    >>> as_real(np.float32(0.5), "min_delta", minimum=0)
    0.5
    >>> as_real(-1, "min_delta", minimum=0)
    Traceback (most recent call last):
    ...
    ValueError: min_delta must be a real number >= 0, got -1
    """
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if is_real and (minimum is None or value >= minimum):
        return float(value)
    wanted = "a real number" if minimum is None else f"a real number >= {minimum:g}"
    raise ValueError(f"{name} must be {wanted}, got {value!r}")
