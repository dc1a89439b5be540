"""How the arrays of a file become samples: ``x -> y`` pairs, or windows of a time series.

A :class:`~nol_fast.data.files.reader.FormatReader` finds a file's arrays; a :class:`Request`
(what :class:`~nol_fast.data.files.PairFile` was asked for) turns the chosen ones into a
:class:`Layout`: which array each of x and y comes from, and how its stored rows become
served samples ``(c, *grid)``. The rules are the same for every format.

Channel dimension
    Samples are served as ``(c, *grid)``. Files that record their layout (ours, the dataset
    cache's) already store ``(n, c, *grid)``; PDEBench's layouts are known. Any other
    ``x``/``y`` array (e.g. neuraloperator's ``(n, *grid)``) is taken to have a channel
    dimension when dim 1 is at most :data:`MAX_DETECTED_CHANNELS` and smaller than every later
    dim (``(n, 3, 64, 64)``); otherwise (``(n, 64, 64)``, ``(n, 16, 16)``, ``(n, 1024)``) a
    channel dimension of size 1 is inserted. Pass ``add_channel_dim=True``/``False`` to
    decide instead.

Time series
    A series of shape ``(n, T, *grid)`` (or with a trailing variable axis ``V``) gives one
    pair per trajectory. Without ``history`` and ``horizon`` the input is the first time step
    and the target the last. With ``history=h`` and/or ``horizon=k`` (the other defaults to
    1), x is steps ``[0, h)`` and y steps ``[h, h + k)``, stacked as channels in time-major
    order (step 0's V variables, then step 1's...), so x has ``h * V`` channels; ``h + k``
    must not exceed ``T``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nol_fast.data.files.reader import NUMERIC_KINDS, ArrayInfo

#: The largest dim 1 of an ``x``/``y`` array taken for a channel dimension without being told.
MAX_DETECTED_CHANNELS = 8

#: A stored array: its key and what the reader says of it.
Named = tuple[str, ArrayInfo]


@dataclass(frozen=True)
class Source:
    """How one of x / y is read: a stored array and what is done to its rows."""

    key: str                        # dataset / array name; '<group>/data' for groups
    served: tuple[int, ...]         # (n, c, *grid) as served
    add_channel: bool = False       # pairs: insert a channel dim of size 1
    steps: tuple[int, int] | None = None   # time series: the window [start, stop)
    has_vars: bool = False          # time series: trailing variable axis V

    def serve(self, rows: np.ndarray) -> np.ndarray:
        """Stored rows (of the window ``steps``) as served rows ``(m, c, *grid)``."""
        if self.steps is not None:
            return _steps_to_channels(rows, self.has_vars)
        return rows[:, None] if self.add_channel else rows


@dataclass(frozen=True)
class Layout:
    """What a file serves: the layout's name, the sources of x and y, and the sample count."""

    name: str                       # 'pairs', 'pdebench-darcy', 'series', 'pdebench-groups'
    x: Source
    y: Source
    keys: dict[str, str]            # {'x': ..., 'y': ...}, e.g. "tensor[0:1]"
    n_samples: int


class Request:
    """The arrays and time windows asked of a file, checked; builds the :class:`Layout`.

    Parameters are those of :class:`~nol_fast.data.files.PairFile`; ``path`` only names the
    file in messages.
    """

    def __init__(self, path: Path, x_key: str | None = None, y_key: str | None = None,
                 history: int | None = None, horizon: int | None = None,
                 add_channel_dim: bool | None = None) -> None:
        self.path = path
        self.history = _check_window(history, "history")
        self.horizon = _check_window(horizon, "horizon")
        if add_channel_dim is not None and not isinstance(add_channel_dim, bool):
            raise ValueError(f"add_channel_dim must be True, False or None, "
                             f"got {add_channel_dim!r}")
        self.add_channel_dim = add_channel_dim
        if y_key is not None and x_key is None:
            raise ValueError(f"y_key={y_key!r} given without x_key: pass both to read a pair "
                             f"of arrays, or x_key alone to read a time series")
        self.x_key = x_key
        self.y_key = y_key

    def keyed(self, lookup: Callable[[str], ArrayInfo], stored_channels: bool) -> Layout:
        """Pairs ``x_key -> y_key`` (``'x' -> 'y'`` by default), or the time series ``x_key``
        when it comes without ``y_key``.

        ``lookup`` gives a key's shape and dtype (raising
        :class:`~nol_fast.data.files.MissingKeyError`);
        ``stored_channels`` says the file is known to store ``(n, c, *grid)``.
        """
        x_key, y_key = ("x", "y") if self.x_key is None else (self.x_key, self.y_key)
        if y_key is None:
            return self.series(x_key, lookup(x_key), has_vars=False)
        x, y = lookup(x_key), lookup(y_key)
        if self.add_channel_dim is not None:
            add_x = add_y = self.add_channel_dim
        elif stored_channels:
            add_x = add_y = False
        else:
            add_x, add_y = not _has_channel_dim(x.shape), not _has_channel_dim(y.shape)
        return self.pairs((x_key, x), (y_key, y), add_x, add_y)

    def check_no_channel_override(self, layout: str) -> None:
        """Refuse ``add_channel_dim`` for a layout whose channels are known."""
        if self.add_channel_dim is not None:
            raise ValueError(f"{self.path}: add_channel_dim applies to files of x/y arrays; "
                             f"the channels of {layout} are known")

    def check_numeric(self, key: str, info: ArrayInfo) -> None:
        """Refuse an array of non-numeric data or without elements."""
        if info.dtype.kind not in NUMERIC_KINDS:
            raise ValueError(f"{self.path}: {key!r} has non-numeric dtype {info.dtype} (shape "
                             f"{info.shape}); expected integer or floating-point data")
        if 0 in info.shape:
            raise ValueError(f"{self.path}: {key!r} has shape {info.shape}, which holds no data")

    def pairs(self, x: Named, y: Named, add_x: bool, add_y: bool,
              name: str = "pairs") -> Layout:
        """Rows of ``x`` paired with rows of ``y``; ``add_*`` inserts a channel dim of 1."""
        (x_key, x_info), (y_key, y_info) = x, y
        x_shape, y_shape = x_info.shape, y_info.shape
        if self.history is not None or self.horizon is not None:
            raise ValueError(f"{self.path}: history/horizon apply to time series; this file "
                             f"holds x/y pairs {x_key!r} {x_shape} and {y_key!r} {y_shape}")
        for key, info in (x, y):
            self.check_numeric(key, info)
            if len(info.shape) < 1:
                raise ValueError(f"{self.path}: {key!r} is a scalar (shape {info.shape}); "
                                 f"expected one row per sample")
        if x_shape[0] != y_shape[0]:
            raise ValueError(f"{self.path}: x and y have different sample counts: {x_key!r} "
                             f"has shape {x_shape}, {y_key!r} has shape {y_shape}")
        x_served = x_shape[:1] + (1,) * add_x + x_shape[1:]
        y_served = y_shape[:1] + (1,) * add_y + y_shape[1:]
        for key, shape, served in ((x_key, x_shape, x_served), (y_key, y_shape, y_served)):
            if len(served) < 3:
                raise ValueError(
                    f"{self.path}: {key!r} has shape {shape}, served as {served}; expected "
                    f"(n, c, *grid) or (n, *grid) with at least one grid dimension")
        if len(x_served) != len(y_served):
            raise ValueError(
                f"{self.path}: x and y have different grid ranks: {x_key!r} {x_shape} is "
                f"served as {x_served} and {y_key!r} {y_shape} as {y_served}; a sample pair "
                f"needs the same number of grid dimensions (set add_channel_dim if the "
                f"channel dimension was detected wrongly)")
        return Layout(name, Source(x_key, x_served, add_channel=add_x),
                      Source(y_key, y_served, add_channel=add_y),
                      {"x": x_key, "y": y_key}, x_shape[0])

    def series(self, key: str, info: ArrayInfo, has_vars: bool) -> Layout:
        """Windows of the trajectories ``(n, T, *grid)`` (``(n, T, *grid, V)`` with vars)."""
        shape = info.shape
        self.check_no_channel_override(f"time series {key!r}")
        self.check_numeric(key, info)
        if len(shape) < (4 if has_vars else 3):
            raise ValueError(
                f"{self.path}: time series {key!r} has shape {shape}; expected "
                f"(n, T, *grid{', V' if has_vars else ''}) with at least one grid dimension")
        x_steps, y_steps = self._windows(shape[1], f"{key!r} {shape}")
        grid = shape[2:-1] if has_vars else shape[2:]
        n_vars = shape[-1] if has_vars else 1
        return _series_layout("series", key, shape[0], grid, n_vars, x_steps, y_steps, has_vars)

    def per_sample_series(self, key: str, info: ArrayInfo, n_samples: int, source: str,
                          name: str) -> Layout:
        """Windows of ``n_samples`` trajectories stored apart, each ``(T, *grid, V)`` like
        the first, ``key`` (named in messages); ``source`` names them all in
        :attr:`Layout.keys`, e.g. ``'<group>/data'``."""
        shape = info.shape
        if len(shape) < 3:
            raise ValueError(f"{self.path}: {key!r} has shape {shape}; PDEBench per-sample "
                             f"data are (T, *grid, V) with at least one grid dimension")
        x_steps, y_steps = self._windows(shape[0], f"{key!r} {shape}")
        return _series_layout(name, source, n_samples, shape[1:-1], shape[-1], x_steps, y_steps,
                              True)

    def _windows(self, n_steps: int, what: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """The time steps ``[start, stop)`` of x and of y in a series of ``n_steps``."""
        if self.history is None and self.horizon is None:
            if n_steps < 2:
                raise ValueError(f"{self.path}: {what} has {n_steps} time step; input (first "
                                 f"step) and target (last step) need at least 2")
            return (0, 1), (n_steps - 1, n_steps)
        h = 1 if self.history is None else self.history
        k = 1 if self.horizon is None else self.horizon
        if h + k > n_steps:
            raise ValueError(f"{self.path}: history={h} + horizon={k} = {h + k} exceeds the "
                             f"{n_steps} time steps of {what}")
        return (0, h), (h, h + k)


def _series_layout(name: str, key: str, n: int, grid: tuple[int, ...], n_vars: int,
                   x_steps: tuple[int, int], y_steps: tuple[int, int], has_vars: bool) -> Layout:
    """Windows ``x_steps -> y_steps`` of ``n`` series of ``n_vars`` variables on ``grid``."""
    served = {part: (n, (stop - start) * n_vars, *grid)
              for part, (start, stop) in (("x", x_steps), ("y", y_steps))}
    keys = {part: f"{key}[{a}:{b}]" for part, (a, b) in (("x", x_steps), ("y", y_steps))}
    return Layout(name, Source(key, served["x"], steps=x_steps, has_vars=has_vars),
                  Source(key, served["y"], steps=y_steps, has_vars=has_vars), keys, n)


def _check_window(value: Any, name: str) -> int | None:
    """``history``/``horizon`` as an int >= 1, or None; ValueError naming the value."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _has_channel_dim(shape: tuple[int, ...]) -> bool:
    """The detection rule of the module docstring for arrays of unknown layout."""
    return (len(shape) >= 3 and shape[1] <= MAX_DETECTED_CHANNELS
            and shape[1] < min(shape[2:]))


def _steps_to_channels(rows: np.ndarray, has_vars: bool) -> np.ndarray:
    """``(m, s, *grid[, V])`` -> ``(m, s * V, *grid)``, time-major channels."""
    if has_vars:
        rows = np.moveaxis(rows, -1, 2)  # (m, s, V, *grid)
        rows = rows.reshape((rows.shape[0], -1) + rows.shape[3:])
    return rows
