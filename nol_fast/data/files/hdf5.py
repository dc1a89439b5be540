"""HDF5 files (``.h5``, ``.hdf5``): ours, PDEBench's, and any other by dataset name.

Read lazily: opening reads metadata only, and a read fetches only the requested samples and
only their requested time steps. The layout is recognised from the content:

* ours (written by :func:`~nol_fast.data.files.save_pairs`): datasets ``x`` and ``y`` of shape
  ``(n, c, *grid)``, chunked per sample, and the attributes ``layout``
  (:data:`~nol_fast.data.files.LAYOUT_TAG`) and ``meta`` (JSON of the generator's name and
  parameters); :func:`~nol_fast.data.files.save_series` writes PDEBench's time series with
  ``meta``.
* PDEBench 2-D Darcy flow: ``nu`` ``(n, X, Y)`` is the input, ``tensor`` ``(n, 1, X, Y)`` the
  output.
* PDEBench time series: ``tensor`` of shape ``(n, T, X)``, ``(n, T, X, Y)`` or
  ``(n, T, X, Y, V)`` with ``V`` variables (coordinates in ``x-coordinate``,
  ``t-coordinate``... are not needed).
* PDEBench per-sample groups (2-D diffusion-reaction, shallow water...): root groups
  ``'0000'``, ``'0001'``... in sorted order, each with ``data`` of shape ``(T, *grid, V)``;
  also a time series.
* any other file: name the datasets with ``x_key`` and ``y_key`` (paths such as
  ``'group/dataset'`` work), or ``x_key`` alone for a time series ``(n, T, *grid)``.

Each process opens its own handle on first read (see :class:`Hdf5Reader`).
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nol_fast.data.files.errors import LISTED, MissingKeyError, name_list, unreadable
from nol_fast.data.files.layout import Layout, Request
from nol_fast.data.files.metadata import LAYOUT_TAG, attribute_text, parse_meta
from nol_fast.data.files.reader import (
    ArrayInfo,
    FormatReader,
    content_line,
    format_shape,
    time_window,
)


class Hdf5Reader(FormatReader):
    """An HDF5 file; datasets are read through one handle per process.

    The handle is opened on first read, and again in a process that did not open it: a forked
    DataLoader worker sees another process id, and pickling (spawned workers) drops it. Handles
    are closed before the process forks, unless a read is under way, so no child inherits one.
    """

    format = "hdf5"
    suffixes = (".h5", ".hdf5")
    noun = "dataset"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._handle: h5py.File | None = None
        self._handle_pid: int | None = None
        self._reading = 0  # reads under way in this process; see _close_before_fork
        self._groups: list[str] = []  # PDEBench per-sample groups, once recognised
        with self._open() as file:
            tag = file.attrs.get("layout")
            self.stores_channels = (isinstance(tag, (str, bytes))
                                    and attribute_text(tag) == LAYOUT_TAG)
            # Pairs and series written by save_pairs/save_series keep their metadata here.
            self.meta = parse_meta(file.attrs.get("meta"))

    def _open(self) -> h5py.File:
        try:
            return h5py.File(self.path, "r")
        except OSError as err:
            raise unreadable(self.path, "HDF5 file", err, ("hdf5",)) from None

    def arrays(self) -> dict[str, ArrayInfo]:
        with self._open() as file:
            datasets, _ = _visit(file)
            return {name: ArrayInfo(tuple(ds.shape), ds.dtype) for name, ds in datasets}

    def array(self, key: str) -> ArrayInfo:
        with self._open() as file:
            return self._lookup(file, key)

    def _lookup(self, file: h5py.File, key: str) -> ArrayInfo:
        obj = file.get(key)
        if not isinstance(obj, h5py.Dataset):
            raise MissingKeyError(f"{self.path}: no dataset {key!r}; datasets present: "
                                  f"{_dataset_names(file)}")
        return ArrayInfo(tuple(obj.shape), obj.dtype)

    def layout(self, request: Request) -> Layout:
        """Named datasets, ours, then PDEBench's Darcy, time series and per-sample groups."""
        with self._open() as file:
            def lookup(key: str) -> ArrayInfo:
                return self._lookup(file, key)

            has_xy = "x" in file and "y" in file
            if request.x_key is not None or self.stores_channels or has_xy:
                return request.keyed(lookup, self.stores_channels)
            has_darcy = "nu" in file and "tensor" in file
            if has_darcy and _is_darcy(lookup("nu").shape, lookup("tensor").shape):
                request.check_no_channel_override("PDEBench Darcy ('nu' -> 'tensor')")
                return request.pairs(("nu", lookup("nu")), ("tensor", lookup("tensor")),
                                     add_x=True, add_y=False, name="pdebench-darcy")
            if "tensor" in file:
                info = lookup("tensor")
                if not 3 <= len(info.shape) <= 5:
                    raise ValueError(
                        f"{self.path}: dataset 'tensor' has shape {info.shape}; PDEBench time "
                        f"series are (n, T, X), (n, T, X, Y) or (n, T, X, Y, V). Pass "
                        f"x_key='tensor' to read it as (n, T, *grid)")
                return request.series("tensor", info, has_vars=len(info.shape) == 5)
            return self._groups_layout(file, request)

    def _groups_layout(self, file: h5py.File, request: Request) -> Layout:
        """PDEBench's per-sample groups, each holding ``data`` ``(T, *grid, V)``."""
        groups = sorted(k for k in file if isinstance(file[k], h5py.Group))
        with_data = [g for g in groups if isinstance(file[g].get("data"), h5py.Dataset)]
        if not with_data:
            raise ValueError(
                f"{self.path}: no known layout: expected datasets 'x' and 'y', "
                f"PDEBench's 'nu' and 'tensor', 'tensor', or groups holding 'data'; "
                f"datasets present: {_dataset_names(file)}. Name the datasets with x_key "
                f"and y_key (or x_key alone for a time series)")
        missing = sorted(set(groups) - set(with_data))
        if missing:
            raise MissingKeyError(
                f"{self.path}: per-sample groups must each hold a dataset 'data'; "
                f"groups without it: {name_list(missing)}")
        request.check_no_channel_override("PDEBench per-sample groups")
        first = file[with_data[0]]["data"]
        info = ArrayInfo(tuple(first.shape), first.dtype)
        key = f"{with_data[0]}/data"
        request.check_numeric(key, info)
        for group in with_data[1:]:
            other = tuple(file[group]["data"].shape)
            if other != info.shape:
                raise ValueError(f"{self.path}: per-sample groups differ in shape: "
                                 f"'{with_data[0]}/data' has shape {info.shape}, "
                                 f"'{group}/data' has shape {other}")
        layout = request.per_sample_series(key, info, len(with_data), "<group>/data",
                                           "pdebench-groups")
        self._groups = with_data
        return layout

    # ---- per-process handle ----------------------------------------------------------------

    def _file(self) -> h5py.File:
        """This process's handle on the file, opened on first use (and after a fork)."""
        if self._handle is None or self._handle_pid != os.getpid():
            self._handle = self._open()
            self._handle_pid = os.getpid()
            _OPEN_READERS.add(self)
        return self._handle

    def _close_before_fork(self) -> None:
        """Close this process's handle unless a read is under way (then the child reopens)."""
        if self._reading == 0:
            self._drop_handle()

    def _drop_handle(self) -> None:
        if self._handle is not None and self._handle_pid == os.getpid():
            self._handle.close()
        self._handle = None
        self._handle_pid = None

    def close(self) -> None:
        self._drop_handle()
        super().close()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_handle"] = None
        state["_handle_pid"] = None
        state["_reading"] = 0
        return state

    # ---- reading ---------------------------------------------------------------------------

    def load(self, key: str) -> h5py.Dataset:
        return self._file()[key]

    def read(self, key: str, rows: np.ndarray, steps: tuple[int, int] | None) -> np.ndarray:
        """Rows in one read per dataset: a slice where they are contiguous (what HDF5 reads
        fastest), else a list; per-sample groups are read one group per row."""
        window = time_window(steps)
        self._reading += 1
        try:
            if self._groups:
                file = self._file()
                return np.stack([file[self._groups[i]]["data"][window] for i in rows])
            start, stop = int(rows[0]), int(rows[-1]) + 1
            selection = slice(start, stop) if stop - start == len(rows) else rows.tolist()
            return self.load(key)[(selection,) + window]
        finally:
            self._reading -= 1

    # ---- describing ------------------------------------------------------------------------

    def contents(self) -> tuple[list[str], list[str]]:
        """Every dataset with its chunking (the first :data:`LISTED`), and the root
        attributes."""
        lines: list[str] = []
        attrs: list[str] = []
        with self._open() as file:
            datasets, n_groups = _visit(file)
            for name, ds in datasets[:LISTED]:
                chunks = f"  chunks {format_shape(ds.chunks)}" if ds.chunks else ""
                lines.append(content_line(name, str(ds.dtype), ds.shape, chunks))
            if len(datasets) > LISTED:
                lines.append(f"  ... {len(datasets) - LISTED} more datasets")
            if n_groups:
                lines.append(f"  ({len(datasets)} datasets in {n_groups} groups)")
            for key, value in file.attrs.items():
                text = value.decode() if isinstance(value, bytes) else str(value)
                attrs.append(f"  {key} = {text if len(text) <= 200 else text[:197] + '...'}")
        return lines, attrs


def _visit(file: h5py.Group) -> tuple[list[tuple[str, h5py.Dataset]], int]:
    """Every dataset below ``file`` by path, in HDF5's visiting order, and the number of
    groups."""
    datasets: list[tuple[str, h5py.Dataset]] = []
    n_groups = 0

    def visit(name: str, obj: Any) -> None:
        nonlocal n_groups
        if isinstance(obj, h5py.Dataset):
            datasets.append((name, obj))
        else:
            n_groups += 1

    file.visititems(visit)
    return datasets, n_groups


def _dataset_names(file: h5py.Group) -> str:
    """The datasets of ``file``, listed for messages."""
    return name_list(name for name, _ in _visit(file)[0])


def _is_darcy(nu: tuple[int, ...], tensor: tuple[int, ...]) -> bool:
    """PDEBench Darcy: ``nu`` (n, X, Y) and ``tensor`` (n, 1, X, Y)."""
    return len(tensor) == len(nu) + 1 and len(nu) >= 2 and tensor[1] == 1


# HDF5 handles open in this process. They are closed before the process forks (a DataLoader
# starting its workers), so that no child inherits an open file; each process then opens its
# own on first use.
_OPEN_READERS: weakref.WeakSet[Hdf5Reader] = weakref.WeakSet()


def _close_files_before_fork() -> None:
    for reader in list(_OPEN_READERS):
        reader._close_before_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_files_before_fork)
