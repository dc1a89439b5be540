"""Files of (x, y) sample pairs: read users' PDE data, write our own, describe any of them.

:class:`PairFile` serves the samples of one file as ``(x, y)`` float32 tensors of shape
``(channels, *grid)``, the per-sample layout of the datasets of :mod:`nol_fast.data.loaders`.
:func:`save_pairs` writes such pairs and :func:`describe_file` summarises a file for
``nol-fast data info FILE``.

Formats, chosen by the extension (``.h5``/``.hdf5``, ``.npz``, ``.npy``, ``.pt``/``.pth``, or a
directory of ``.npy`` files); the layout inside is then recognised from the content:

HDF5 (read lazily: only the requested samples, and only their requested time steps)
    * ours (written by :func:`save_pairs`): datasets ``x`` and ``y`` of shape
      ``(n, c, *grid)``, chunked per sample, and the attributes ``layout``
      (:data:`LAYOUT_TAG`) and ``meta`` (JSON of the generator's name and parameters).
    * PDEBench 2-D Darcy flow: ``nu`` ``(n, X, Y)`` is the input, ``tensor``
      ``(n, 1, X, Y)`` the output.
    * PDEBench time series: ``tensor`` of shape ``(n, T, X)``, ``(n, T, X, Y)`` or
      ``(n, T, X, Y, V)`` with ``V`` variables (coordinates in ``x-coordinate``,
      ``t-coordinate``... are not needed); see *Time series* below.
    * PDEBench per-sample groups (2-D diffusion-reaction, shallow water...): root groups
      ``'0000'``, ``'0001'``... in sorted order, each with ``data`` of shape
      ``(T, *grid, V)``; also a time series.
    * any other file: name the datasets with ``x_key`` and ``y_key`` (paths such as
      ``'group/dataset'`` work), or ``x_key`` alone for a time series ``(n, T, *grid)``.
``.npz``
    Arrays ``x`` and ``y`` (or ``x_key``/``y_key``; ``x_key`` alone: a time series). Only
    the array headers are read when opening; arrays of uncompressed archives (``np.savez``)
    are then memory-mapped, those of compressed ones read whole on first access.
``.npy`` pairs
    Either a directory holding ``x.npy`` and ``y.npy``, or the path of one of ``NAME_x.npy``
    and ``NAME_y.npy`` (``x.npy``/``y.npy`` too): the other file is found by swapping the
    final ``x``/``y`` of the name. Both are memory-mapped, so reads are lazy.
``.pt``
    A dict with tensors ``x`` and ``y`` (or ``x_key``/``y_key``) read with
    ``torch.load(weights_only=True)``, which never runs pickled code: neuraloperator's files,
    our dataset cache's files (:mod:`nol_fast.data.cache`) and :func:`save_pairs`'s.
    Memory-mapped where the file format allows it.

Channel dimension
    Samples are served as ``(c, *grid)``. Files that record their layout (ours, the cache's,
    whose names end in ``-<32 hex digits>.pt``) already store ``(n, c, *grid)``; PDEBench's
    layouts are known. Any other ``x``/``y`` array (e.g. neuraloperator's ``(n, *grid)``) is
    taken to have a channel dimension when dim 1 is at most :data:`MAX_DETECTED_CHANNELS` and
    smaller than every later dim (``(n, 3, 64, 64)``); otherwise (``(n, 64, 64)``,
    ``(n, 16, 16)``, ``(n, 1024)``) a channel dimension of size 1 is inserted. Pass
    ``add_channel_dim=True``/``False`` to decide instead.

Time series
    A series of shape ``(n, T, *grid)`` (or with a trailing variable axis ``V``) gives one
    pair per trajectory. Without ``history`` and ``horizon`` the input is the first time step
    and the target the last. With ``history=h`` and/or ``horizon=k`` (the other defaults to
    1), x is steps ``[0, h)`` and y steps ``[h, h + k)``, stacked as channels in time-major
    order (step 0's V variables, then step 1's...), so x has ``h * V`` channels; ``h + k``
    must not exceed ``T``.

Errors name the file and the key or shape involved: :class:`FileNotFoundError` for a missing
file, :class:`MissingKeyError` (a ``ValueError`` and a ``KeyError``) for a missing key,
:class:`DataFileError` (a ``ValueError``) for a file that cannot be read at all (truncated,
not the format its extension says, refused by ``weights_only``) and ``ValueError`` for
anything else malformed (unknown extension, different sample counts, non-numeric data, wrong
ranks, a time window longer than the series).
"""

from __future__ import annotations

import json
import operator
import os
import re
import struct
import weakref
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from nol_fast.serialization import atomic_save, atomic_write

__all__ = [
    "LAYOUT_TAG",
    "MAX_DETECTED_CHANNELS",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "DataFileError",
    "MissingKeyError",
    "PairFile",
    "describe_file",
    "save_pairs",
]

#: Marks files written by :func:`save_pairs` (HDF5 attribute ``layout``; the ``layout``
#: entry of the ``meta_json`` record of ``.npz`` and ``.pt`` files).
LAYOUT_TAG = "nol_fast.pairs/1"

#: Name of the JSON record of ``.npz`` and ``.pt`` files written by :func:`save_pairs`.
META_KEY = "meta_json"

#: The largest dim 1 of an ``x``/``y`` array taken for a channel dimension without being told.
MAX_DETECTED_CHANNELS = 8

#: Extensions :class:`PairFile` reads (a directory of ``.npy`` files too).
READ_SUFFIXES = (".h5", ".hdf5", ".npz", ".npy", ".pt", ".pth")

#: Extensions :func:`save_pairs` writes.
WRITE_SUFFIXES = (".h5", ".hdf5", ".npz", ".pt", ".pth")

_FORMATS = {".h5": "hdf5", ".hdf5": "hdf5", ".npz": "npz", ".npy": "npy", ".pt": "pt",
            ".pth": "pt"}
_CACHE_NAME = re.compile(r"^(?P<name>.+)-[0-9a-f]{32}\.pt$")
_NUMERIC_KINDS = "biuf"
_LISTED = 24  # datasets/arrays listed by name in messages and descriptions


class DataFileError(ValueError):
    """A data file that cannot be read at all: truncated, corrupt or of another format."""


class MissingKeyError(ValueError, KeyError):
    """A dataset or array asked for (or required by the layout) is not in the file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class _Source:
    """How one of x / y is read: a stored array and what is done to its rows."""

    key: str                        # dataset / array name; '<group>/data' for groups
    stored: tuple[int, ...]         # stored shape (of one group's data for groups)
    served: tuple[int, ...]         # (n, c, *grid) as served
    add_channel: bool = False       # pairs: insert a channel dim of size 1
    steps: tuple[int, int] | None = None   # time series: the window [start, stop)
    has_vars: bool = False          # time series: trailing variable axis V


# --------------------------------------------------------------------------------------------
# small helpers


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _short(err: BaseException) -> str:
    """The gist of an exception's message, one bounded line, for 'file: reason' messages.

    ``torch.load``'s ``weights_only`` errors open with general advice; their reason follows
    ``WeightsUnpickler error:``, so that part is kept.
    """
    text = _ANSI.sub("", str(err)).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        reason = text.split(marker, 1)[1].strip().split("\n")[0].split(". Please")[0]
        text = f"weights_only refused it: {reason.strip().rstrip('.')}"
    text = text.splitlines()[0].strip() if text else type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# What the first bytes of a file look like: (signature, kind, description).
_SIGNATURES = (
    (b"\x89HDF\r\n\x1a\n", "hdf5", "an HDF5 file"),
    (b"PK\x03\x04", "zip", "a zip archive (.npz or .pt)"),
    (b"PK\x05\x06", "zip", "a zip archive (.npz or .pt)"),
    (b"\x93NUMPY", "npy", "a .npy array"),
    (b"\x80", "pickle", "a pickle (legacy .pt)"),
)


def _sniff(path: Path) -> tuple[str, str]:
    """``(kind, description)`` of a file's content, for hints in error messages."""
    try:
        with open(path, "rb") as file:
            head = file.read(8)
    except OSError:
        return "unreadable", ""
    if not head:
        return "empty", "the file is empty"
    for signature, kind, description in _SIGNATURES:
        if head.startswith(signature):
            return kind, f"its content looks like {description}"
    return "unknown", "its content looks like none of the supported formats"


def _corrupt(path: Path, what: str, err: BaseException,
             expected: tuple[str, ...] = ()) -> DataFileError:
    """The error of a file that cannot be read as ``what``; hints at what it is instead
    unless its first bytes are those of ``expected`` kinds (then it is damaged)."""
    kind, description = _sniff(path)
    hint = f"; {description}" if description and kind not in expected else ""
    return DataFileError(f"{path}: not a readable {what} ({_short(err)}){hint}")


def _listing(names: Sequence[str]) -> str:
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(repr(n) for n in names[:_LISTED])
    return shown + (f", ... ({len(names) - _LISTED} more)" if len(names) > _LISTED else "")


def _check_window(value: Any, name: str) -> int | None:
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


def _npy_header_full(fh: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from a ``.npy`` stream's header; the stream is left at
    the start of the data."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    return tuple(int(s) for s in shape), bool(fortran), dtype


def _npy_header(fh: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of a ``.npy`` stream, without reading the data."""
    shape, _, dtype = _npy_header_full(fh)
    return shape, dtype


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{array name: (shape, dtype)}`` of a ``.npz`` archive, reading headers only."""
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith(".npy"):
                    with archive.open(member) as fh:
                        headers[member[:-4]] = _npy_header(fh)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise _corrupt(path, ".npz archive", err, ("zip",)) from None
    return headers


def _npz_array(path: Path, name: str) -> np.ndarray:
    """Array ``name`` of a ``.npz`` archive: memory-mapped when stored uncompressed (as
    ``np.savez`` does), so only the rows read are loaded; read whole when compressed."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{name}.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as fh:
                fh.seek(info.header_offset)
                local = fh.read(30)  # the member's local header, then its name and extra field
                if local[:4] == b"PK\x03\x04":
                    name_len, extra_len = struct.unpack("<HH", local[26:30])
                    fh.seek(info.header_offset + 30 + name_len + extra_len)
                    shape, fortran, dtype = _npy_header_full(fh)
                    return np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(),
                                     shape=shape, order="F" if fortran else "C")
        with np.load(path, allow_pickle=False) as loaded:
            return loaded[name]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise _corrupt(path, ".npz archive", err, ("zip",)) from None


def _npz_meta(path: Path) -> dict[str, Any] | None:
    """The :func:`save_pairs` record of a ``.npz`` file, or None."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            text = str(archive[META_KEY][()])
    except Exception as err:
        raise _corrupt(path, ".npz archive", err, ("zip",)) from None
    return _parse_record(text)


def _parse_record(text: str) -> dict[str, Any] | None:
    """``{'layout': LAYOUT_TAG, 'meta': {...}}`` -> the meta dict; None if not ours."""
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if isinstance(record, dict) and record.get("layout") == LAYOUT_TAG:
        meta = record.get("meta")
        return meta if isinstance(meta, dict) else {}
    return None


def _load_pt(path: Path) -> dict[str, Any]:
    """A ``.pt`` dict, loaded with ``weights_only=True`` (memory-mapped when possible).

    Unlike the dataset cache's reader this keeps non-tensor entries: third-party files may
    carry them next to ``x`` and ``y``, and only the entries asked for must be tensors.
    """
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(err).lower() and "zip" not in str(err).lower():
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise _corrupt(path, "torch file with weights_only=True", err,
                       ("zip", "pickle")) from None
    if not isinstance(obj, dict):
        raise DataFileError(f"{path}: expected a dict of tensors with keys such as 'x' and "
                            f"'y', got a {type(obj).__name__}")
    return obj


def _pt_meta(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    record = obj.get(META_KEY)
    if not isinstance(record, torch.Tensor) or record.dtype != torch.uint8:
        return None
    return _parse_record(bytes(record.numpy().tobytes()).decode("utf-8", errors="replace"))


def _to_numpy_rows(tensor: torch.Tensor) -> np.ndarray:
    """A CPU tensor as a numpy array (a view where numpy has the dtype)."""
    tensor = tensor.detach()
    try:
        return tensor.numpy()
    except TypeError:  # bfloat16, float8...: no numpy dtype
        return tensor.float().numpy()


# --------------------------------------------------------------------------------------------
# PairFile


class PairFile(Dataset):
    """The ``(x, y)`` samples of a data file, as float32 tensors with a channel dimension.

    Parameters
    ----------
    path : path
        A ``.h5``/``.hdf5``, ``.npz``, ``.pt``/``.pth`` or ``NAME_x.npy`` file, or a
        directory holding ``x.npy`` and ``y.npy``; layouts in the module docstring.
    x_key, y_key : str, optional
        Names of the input and output datasets/arrays, overriding the detected layout;
        ``x_key`` alone names a time series ``(n, T, *grid)``.
    history, horizon : int, optional
        Time series only: x is steps ``[0, history)``, y steps
        ``[history, history + horizon)`` (the one not given is 1). Without either, x is the
        first step and y the last.
    add_channel_dim : bool, optional
        ``x``/``y`` pair files only: True inserts a channel dim of size 1 in both arrays
        (files of ``(n, *grid)`` arrays such as neuraloperator's), False takes dim 1 for the
        channels; the default detects it (module docstring).

    Attributes
    ----------
    format : str
        ``'hdf5'``, ``'npz'``, ``'npy'`` or ``'pt'``.
    layout : str
        ``'pairs'``, ``'pdebench-darcy'``, ``'series'`` or ``'pdebench-groups'``.
    n_samples : int
        Number of samples (trajectories for time series).
    shapes : dict
        ``{'x': (n, c_x, *grid_x), 'y': (n, c_y, *grid_y)}``, the shapes as served.
    keys : dict
        ``{'x': ..., 'y': ...}``: where each comes from, e.g. ``"tensor[0:1]"``.
    meta : dict
        The generator's name and parameters stored by :func:`save_pairs` or
        :func:`save_series`, else ``{}``.

    Notes
    -----
    HDF5 files are opened on first access in each process and the handle is dropped when the
    object is pickled, so the object works in DataLoader workers whether they are forked
    (a forked worker sees a different process id and reopens the file) or spawned. Opening
    reads metadata only. :meth:`take` reads a batch in one sorted read per array;
    ``__getitems__`` lets a DataLoader use it for whole batches.

    Examples
    --------
    >>> data = PairFile("2D_DarcyFlow_beta1.0_Train.hdf5")  # doctest: +SKIP
    >>> x, y = data[0]  # doctest: +SKIP
    >>> x.shape, y.shape  # doctest: +SKIP
    (torch.Size([1, 128, 128]), torch.Size([1, 128, 128]))
    """

    def __init__(
        self,
        path: str | os.PathLike,
        x_key: str | None = None,
        y_key: str | None = None,
        history: int | None = None,
        horizon: int | None = None,
        *,
        add_channel_dim: bool | None = None,
    ) -> None:
        self.path = Path(path)
        self.history = _check_window(history, "history")
        self.horizon = _check_window(horizon, "horizon")
        if add_channel_dim is not None and not isinstance(add_channel_dim, bool):
            raise ValueError(f"add_channel_dim must be True, False or None, "
                             f"got {add_channel_dim!r}")
        self._add_channel_dim = add_channel_dim
        if y_key is not None and x_key is None:
            raise ValueError(f"y_key={y_key!r} given without x_key: pass both to read a pair "
                             f"of arrays, or x_key alone to read a time series")
        self.format, self._files = _resolve(self.path)
        self.meta: dict[str, Any] = {}
        self.cache_name: str | None = None
        self._groups: list[str] = []
        self._handle: h5py.File | None = None
        self._handle_pid: int | None = None
        self._arrays: dict[str, Any] | None = None
        self._reading = 0  # reads under way in this process; see _close_before_fork
        if self.format == "hdf5":
            self._plan_hdf5(x_key, y_key)
        elif self.format == "npz":
            self._plan_npz(x_key, y_key)
        elif self.format == "npy":
            self._plan_npy(x_key, y_key)
        else:
            self._plan_pt(x_key, y_key)

    # ---- layout detection ------------------------------------------------------------------

    def _plan_hdf5(self, x_key: str | None, y_key: str | None) -> None:
        try:
            file = h5py.File(self.path, "r")
        except OSError as err:
            raise _corrupt(self.path, "HDF5 file", err, ("hdf5",)) from None
        with file:
            def lookup(key: str) -> tuple[tuple[int, ...], np.dtype]:
                obj = file.get(key)
                if not isinstance(obj, h5py.Dataset):
                    raise MissingKeyError(
                        f"{self.path}: no dataset {key!r}; datasets present: "
                        f"{_listing(_hdf5_datasets(file))}")
                return tuple(obj.shape), obj.dtype

            layout = file.attrs.get("layout")
            ours = isinstance(layout, (str, bytes)) and _text(layout) == LAYOUT_TAG
            # Pairs and series written by save_pairs/save_series keep their metadata here.
            self.meta = _attr_json(file.attrs.get("meta"))
            if x_key is not None:
                self._plan_keys(lookup, x_key, y_key, ours)
            elif ours or ("x" in file and "y" in file):
                self._plan_keys(lookup, "x", "y", ours)
            elif "nu" in file and "tensor" in file and _is_darcy(lookup("nu")[0],
                                                                 lookup("tensor")[0]):
                self._no_channel_override("PDEBench Darcy ('nu' -> 'tensor')")
                self._plan_pairs(("nu", *lookup("nu")), ("tensor", *lookup("tensor")),
                                 add_x=True, add_y=False, layout="pdebench-darcy")
            elif "tensor" in file:
                shape, dtype = lookup("tensor")
                if not 3 <= len(shape) <= 5:
                    raise ValueError(
                        f"{self.path}: dataset 'tensor' has shape {shape}; PDEBench time "
                        f"series are (n, T, X), (n, T, X, Y) or (n, T, X, Y, V). Pass "
                        f"x_key='tensor' to read it as (n, T, *grid)")
                self._plan_series("tensor", shape, dtype, has_vars=len(shape) == 5)
            else:
                groups = sorted(k for k in file if isinstance(file[k], h5py.Group))
                with_data = [g for g in groups if isinstance(file[g].get("data"), h5py.Dataset)]
                if not with_data:
                    raise ValueError(
                        f"{self.path}: no known layout: expected datasets 'x' and 'y', "
                        f"PDEBench's 'nu' and 'tensor', 'tensor', or groups holding 'data'; "
                        f"datasets present: {_listing(_hdf5_datasets(file))}. Name the "
                        f"datasets with x_key and y_key (or x_key alone for a time series)")
                missing = sorted(set(groups) - set(with_data))
                if missing:
                    raise MissingKeyError(
                        f"{self.path}: per-sample groups must each hold a dataset 'data'; "
                        f"groups without it: {_listing(missing)}")
                self._plan_groups(file, with_data)

    def _plan_npz(self, x_key: str | None, y_key: str | None) -> None:
        headers = _npz_headers(self.path)
        found = _npz_meta(self.path) if META_KEY in headers else None
        ours = found is not None
        if ours:
            self.meta = found
        self._plan_keys(self._header_lookup(headers, "array"), x_key or "x",
                        y_key if x_key is not None else "y", ours)

    def _plan_npy(self, x_key: str | None, y_key: str | None) -> None:
        if x_key is not None or y_key is not None:
            raise ValueError(f"{self.path}: x_key/y_key do not apply to .npy pairs, whose "
                             f"arrays are the files {self._files['x'].name} and "
                             f"{self._files['y'].name}")
        headers = {}
        for name, file in self._files.items():
            try:
                with open(file, "rb") as fh:
                    headers[name] = _npy_header(fh)
            except (ValueError, OSError, EOFError) as err:
                raise _corrupt(file, ".npy array", err, ("npy",)) from None
        self._plan_keys(self._header_lookup(headers, "array"), "x", "y", False)

    def _plan_pt(self, x_key: str | None, y_key: str | None) -> None:
        obj = _load_pt(self.path)
        found = _pt_meta(obj)
        ours = found is not None
        if ours:
            self.meta = found
        match = _CACHE_NAME.match(self.path.name)
        if match and not ours:
            self.cache_name = match.group("name")
        arrays: dict[str, np.ndarray] = {}

        def lookup(key: str) -> tuple[tuple[int, ...], np.dtype]:
            if key not in obj:
                raise MissingKeyError(f"{self.path}: no key {key!r}; keys present: "
                                      f"{_listing([str(k) for k in obj])}")
            value = obj[key]
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{self.path}: {key!r} is a {type(value).__name__}, not a "
                                 f"tensor")
            if value.is_complex():
                raise ValueError(f"{self.path}: tensor {key!r} has non-real dtype "
                                 f"{value.dtype} (shape {tuple(value.shape)}); expected "
                                 f"integer or floating-point data")
            arrays[key] = _to_numpy_rows(value)
            return tuple(value.shape), arrays[key].dtype

        self._plan_keys(lookup, x_key or "x", y_key if x_key is not None else "y",
                        ours or self.cache_name is not None)
        self._arrays = {key: arrays[key] for key in {self._x.key, self._y.key}}

    def _header_lookup(self, headers: Mapping[str, tuple[tuple[int, ...], np.dtype]],
                       what: str) -> Callable[[str], tuple[tuple[int, ...], np.dtype]]:
        def lookup(key: str) -> tuple[tuple[int, ...], np.dtype]:
            if key not in headers:
                raise MissingKeyError(f"{self.path}: no {what} {key!r}; {what}s present: "
                                      f"{_listing(list(headers))}")
            return headers[key]
        return lookup

    def _plan_keys(self, lookup: Callable[[str], tuple[tuple[int, ...], np.dtype]],
                   x_key: str, y_key: str | None, stored_channels: bool) -> None:
        """Pairs ``x_key -> y_key``, or the time series ``x_key`` when ``y_key`` is None."""
        if y_key is None:
            shape, dtype = lookup(x_key)
            self._plan_series(x_key, shape, dtype, has_vars=False)
            return
        x_shape, x_dtype = lookup(x_key)
        y_shape, y_dtype = lookup(y_key)
        override = self._add_channel_dim
        if override is not None:
            add_x = add_y = override
        elif stored_channels:
            add_x = add_y = False
        else:
            add_x, add_y = not _has_channel_dim(x_shape), not _has_channel_dim(y_shape)
        self._plan_pairs((x_key, x_shape, x_dtype), (y_key, y_shape, y_dtype), add_x, add_y,
                         layout="pairs")

    def _no_channel_override(self, layout: str) -> None:
        if self._add_channel_dim is not None:
            raise ValueError(f"{self.path}: add_channel_dim applies to files of x/y arrays; "
                             f"the channels of {layout} are known")

    def _check_numeric(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(f"{self.path}: {key!r} has non-numeric dtype {dtype} (shape "
                             f"{shape}); expected integer or floating-point data")
        if 0 in shape:
            raise ValueError(f"{self.path}: {key!r} has shape {shape}, which holds no data")

    def _plan_pairs(self, x: tuple[str, tuple[int, ...], np.dtype],
                    y: tuple[str, tuple[int, ...], np.dtype], add_x: bool, add_y: bool,
                    layout: str) -> None:
        (x_key, x_shape, _), (y_key, y_shape, _) = x, y
        if self.history is not None or self.horizon is not None:
            raise ValueError(f"{self.path}: history/horizon apply to time series; this file "
                             f"holds x/y pairs {x_key!r} {x_shape} and {y_key!r} {y_shape}")
        for key, shape, dtype in (x, y):
            self._check_numeric(key, shape, dtype)
            if len(shape) < 1:
                raise ValueError(f"{self.path}: {key!r} is a scalar (shape {shape}); expected "
                                 f"one row per sample")
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
        self.layout = layout
        self._x = _Source(x_key, x_shape, x_served, add_channel=add_x)
        self._y = _Source(y_key, y_shape, y_served, add_channel=add_y)
        self.keys = {"x": x_key, "y": y_key}
        self.n_samples = x_shape[0]

    def _windows(self, n_steps: int, what: str) -> tuple[tuple[int, int], tuple[int, int]]:
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

    def _plan_series(self, key: str, shape: tuple[int, ...], dtype: np.dtype,
                     has_vars: bool) -> None:
        self._no_channel_override(f"time series {key!r}")
        self._check_numeric(key, shape, dtype)
        if len(shape) < (4 if has_vars else 3):
            raise ValueError(
                f"{self.path}: time series {key!r} has shape {shape}; expected "
                f"(n, T, *grid{', V' if has_vars else ''}) with at least one grid dimension")
        x_steps, y_steps = self._windows(shape[1], f"{key!r} {shape}")
        grid = shape[2:-1] if has_vars else shape[2:]
        n_vars = shape[-1] if has_vars else 1
        self._set_series(key, shape, shape[0], grid, n_vars, x_steps, y_steps, has_vars,
                         layout="series")

    def _plan_groups(self, file: h5py.File, groups: list[str]) -> None:
        self._no_channel_override("PDEBench per-sample groups")
        first = file[groups[0]]["data"]
        shape, dtype = tuple(first.shape), first.dtype
        key = f"{groups[0]}/data"
        self._check_numeric(key, shape, dtype)
        for group in groups[1:]:
            other = tuple(file[group]["data"].shape)
            if other != shape:
                raise ValueError(f"{self.path}: per-sample groups differ in shape: "
                                 f"'{groups[0]}/data' has shape {shape}, '{group}/data' has "
                                 f"shape {other}")
        if len(shape) < 3:
            raise ValueError(f"{self.path}: {key!r} has shape {shape}; PDEBench per-sample "
                             f"data are (T, *grid, V) with at least one grid dimension")
        x_steps, y_steps = self._windows(shape[0], f"{key!r} {shape}")
        self._groups = groups
        self._set_series("<group>/data", shape, len(groups), shape[1:-1], shape[-1], x_steps,
                         y_steps, True, layout="pdebench-groups")

    def _set_series(self, key: str, stored: tuple[int, ...], n: int, grid: tuple[int, ...],
                    n_vars: int, x_steps: tuple[int, int], y_steps: tuple[int, int],
                    has_vars: bool, layout: str) -> None:
        served = {name: (n, (stop - start) * n_vars, *grid)
                  for name, (start, stop) in (("x", x_steps), ("y", y_steps))}
        self.layout = layout
        self._x = _Source(key, stored, served["x"], steps=x_steps, has_vars=has_vars)
        self._y = _Source(key, stored, served["y"], steps=y_steps, has_vars=has_vars)
        self.keys = {name: f"{key}[{a}:{b}]" for name, (a, b) in (("x", x_steps),
                                                                    ("y", y_steps))}
        self.n_samples = n

    # ---- per-process storage ---------------------------------------------------------------

    def _file(self) -> h5py.File:
        """This process's handle on the HDF5 file, opened on first use (and after a fork)."""
        if self._handle is None or self._handle_pid != os.getpid():
            try:
                self._handle = h5py.File(self.path, "r")
            except OSError as err:
                raise _corrupt(self.path, "HDF5 file", err, ("hdf5",)) from None
            self._handle_pid = os.getpid()
            _OPEN_FILES.add(self)
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

    def _array(self, key: str) -> Any:
        if self.format == "hdf5":
            return self._file()[key]
        if self._arrays is None:
            if self.format == "npy":
                self._arrays = {name: np.load(file, mmap_mode="r", allow_pickle=False)
                                for name, file in self._files.items()}
            elif self.format == "npz":
                self._arrays = {k: _npz_array(self.path, k) for k in {self._x.key, self._y.key}}
            else:
                obj = _load_pt(self.path)
                self._arrays = {k: _to_numpy_rows(obj[k]) for k in {self._x.key, self._y.key}}
        return self._arrays[key]

    def close(self) -> None:
        """Close the HDF5 handle of this process and drop loaded arrays (reopened on use)."""
        self._drop_handle()
        self._arrays = None

    def __enter__(self) -> PairFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without open handles or loaded arrays: each process opens its own."""
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_handle_pid"] = None
        state["_arrays"] = None
        state["_reading"] = 0
        return state

    # ---- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.n_samples

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """``{'x': (n, c, *grid), 'y': (n, c, *grid)}`` as served."""
        return {"x": self._x.served, "y": self._y.served}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"PairFile indices must be integers, got "
                            f"{type(index).__name__}; use take() for several") from None
        batch = self.take([i])
        return batch["x"][0], batch["y"][0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A DataLoader batch in one :meth:`take` (sorted reads) instead of one per sample."""
        batch = self.take(indices)
        return list(zip(batch["x"].unbind(0), batch["y"].unbind(0), strict=True))

    def take(self, indices: Sequence[int] | np.ndarray | torch.Tensor | slice
             ) -> dict[str, torch.Tensor]:
        """Samples ``indices`` as ``{'x': (m, c, *grid), 'y': (m, c, *grid)}`` float32.

        Indices may repeat, be negative or come in any order; each array is read once, at the
        distinct indices in increasing order (what HDF5 reads fastest), and reordered after.
        """
        idx = self._indices(indices)
        unique, inverse = np.unique(idx, return_inverse=True)
        out = {}
        self._reading += 1
        try:
            for name, source in (("x", self._x), ("y", self._y)):
                rows = self._read(source, unique)
                if len(unique) != len(idx) or not np.array_equal(unique, idx):
                    rows = rows[inverse.reshape(-1)]
                out[name] = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        finally:
            self._reading -= 1
        return out

    def _indices(self, indices: Any) -> np.ndarray:
        n = self.n_samples
        if isinstance(indices, slice):
            return np.arange(n)[indices]
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise TypeError(f"indices must be a 1-D sequence of integers, got shape "
                            f"{idx.shape} of dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False)
        bad = idx[(idx < -n) | (idx >= n)]
        if bad.size:
            raise IndexError(f"sample index {int(bad[0])} is out of range for {self.path} "
                             f"with {n} samples")
        return np.where(idx < 0, idx + n, idx)

    def _read(self, source: _Source, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (sorted, distinct) of one source, as ``(m, c, *grid)``."""
        if len(idx) == 0:
            return np.zeros((0,) + source.served[1:], dtype=np.float32)
        window = () if source.steps is None else (slice(*source.steps),)
        try:
            if self.layout == "pdebench-groups":
                file = self._file()
                rows = np.stack([file[self._groups[i]]["data"][window] for i in idx])
            else:
                array = self._array(source.key)
                if isinstance(array, h5py.Dataset):
                    start, stop = int(idx[0]), int(idx[-1]) + 1
                    rows_sel = (slice(start, stop) if stop - start == len(idx)
                                else idx.tolist())
                    rows = array[(rows_sel,) + window]
                else:
                    rows = array[(idx,) + window]
        except (OSError, KeyError) as err:
            raise DataFileError(f"{self.path}: reading {source.key!r} failed "
                                f"({_short(err)})") from None
        if source.steps is not None:
            return _steps_to_channels(rows, source.has_vars)
        return rows[:, None] if source.add_channel else rows

    def __repr__(self) -> str:
        return (f"PairFile({str(self.path)!r}, format={self.format!r}, layout={self.layout!r}, "
                f"n_samples={self.n_samples}, x={self.shapes['x'][1:]}, "
                f"y={self.shapes['y'][1:]})")


# HDF5 handles open in this process. They are closed before the process forks (a DataLoader
# starting its workers), so that no child inherits an open file; each process then opens its
# own on first use.
_OPEN_FILES: weakref.WeakSet[PairFile] = weakref.WeakSet()


def _close_files_before_fork() -> None:
    for data in list(_OPEN_FILES):
        data._close_before_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_files_before_fork)


# --------------------------------------------------------------------------------------------
# path resolution and HDF5 helpers


def _resolve(path: Path) -> tuple[str, dict[str, Path]]:
    """The format of ``path`` and, for ``.npy`` pairs, the two files."""
    if path.is_dir():
        files = {"x": path / "x.npy", "y": path / "y.npy"}
        for file in files.values():
            if not file.is_file():
                raise FileNotFoundError(f"{file}: no such file; a directory of .npy pairs "
                                        f"holds x.npy and y.npy")
        return "npy", files
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such data file")
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"{path}: unknown data file extension {path.suffix!r}; supported: "
                         f"{', '.join(READ_SUFFIXES)} or a directory holding x.npy and y.npy")
    fmt = _FORMATS[suffix]
    if fmt != "npy":
        return fmt, {}
    stem = path.stem
    if stem in ("x", "y") or stem.endswith(("_x", "_y")):
        role = stem[-1]
        other = path.with_name(stem[:-1] + ("y" if role == "x" else "x") + path.suffix)
        if not other.is_file():
            raise FileNotFoundError(f"{other}: no such file; it holds the "
                                    f"{'y' if role == 'x' else 'x'} of {path.name}")
        return "npy", {role: path, ("y" if role == "x" else "x"): other}
    raise ValueError(f"{path}: a .npy pair is NAME_x.npy with NAME_y.npy (or x.npy with y.npy, "
                     f"or their directory); {path.name!r} does not end in _x or _y")


def _hdf5_datasets(file: h5py.Group) -> list[str]:
    names: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            names.append(name)

    file.visititems(visit)
    return names


def _is_darcy(nu: tuple[int, ...], tensor: tuple[int, ...]) -> bool:
    """PDEBench Darcy: ``nu`` (n, X, Y) and ``tensor`` (n, 1, X, Y)."""
    return len(tensor) == len(nu) + 1 and len(nu) >= 2 and tensor[1] == 1


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _attr_json(value: Any) -> dict[str, Any]:
    """The dict stored as JSON text in an HDF5 attribute; ``{}`` if it is not one."""
    if isinstance(value, bytes):
        value = _text(value)
    if not isinstance(value, str):
        return {}
    try:
        meta = json.loads(value)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


# --------------------------------------------------------------------------------------------
# writing


def _as_array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise ValueError(f"{name} has non-real dtype {value.dtype} (shape "
                             f"{tuple(value.shape)}); expected integer or floating-point data")
        value = _to_numpy_rows(value.detach().cpu().contiguous())
    array = np.asarray(value)
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"{name} has non-numeric dtype {array.dtype} (shape {array.shape}); "
                         f"expected integer or floating-point data")
    return np.ascontiguousarray(array)


def _meta_json(meta: dict[str, Any]) -> str:
    """``meta`` as the JSON text stored in a file; a clear error if it is not plain data."""
    try:
        return json.dumps(meta, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"meta must be plain JSON data (numbers, strings, lists, dicts), got "
                        f"{meta!r}: {err}") from None


def save_pairs(path: str | os.PathLike, x: Any, y: Any,
               meta: Mapping[str, Any] | None = None) -> Path:
    """Write samples ``x -> y`` to ``path``, atomically, in the format of its extension.

    Parameters
    ----------
    path : path
        ``.h5``/``.hdf5`` (datasets ``x`` and ``y`` chunked one sample per chunk, attributes
        ``layout`` and ``meta``), ``.npz`` (arrays ``x``, ``y`` and ``meta_json``) or
        ``.pt``/``.pth`` (a dict of tensors ``x``, ``y`` and ``meta_json``, a uint8 tensor of
        UTF-8 JSON, so the file stays a dict of tensors). Parent directories are created.
    x, y : Tensor or array
        Shapes ``(n, c, *grid)`` with the same ``n`` and the same number of grid dims;
        integer or floating-point data, stored in their own dtype.
    meta : mapping, optional
        The generator's name and parameters as plain JSON data, e.g.
        ``{'name': 'heat', 'params': {'resolution': 32}}``; read back as ``PairFile.meta``.

    Returns
    -------
    Path
        ``path``. The file is written to a temporary file in the same directory, flushed to
        disk and moved into place, so readers see the old file or the new one, never a part.

    Examples
    --------
    >>> save_pairs("heat.h5", torch.zeros(4, 1, 8), torch.ones(4, 1, 8),
    ...            meta={"name": "heat"})  # doctest: +SKIP
    PosixPath('heat.h5')
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise ValueError(f"{path}: cannot write extension {path.suffix!r}; supported: "
                         f"{', '.join(WRITE_SUFFIXES)}")
    xa, ya = _as_array(x, "x"), _as_array(y, "y")
    for name, array in (("x", xa), ("y", ya)):
        if array.ndim < 3 or 0 in array.shape:
            raise ValueError(f"{name} has shape {array.shape}; expected (n, c, *grid) with at "
                             f"least one grid dimension and no empty dimension")
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(f"x and y have different sample counts: x has shape {xa.shape}, "
                         f"y has shape {ya.shape}")
    if xa.ndim != ya.ndim:
        raise ValueError(f"x and y have different grid ranks: x has shape {xa.shape}, y has "
                         f"shape {ya.shape}")
    meta = dict(meta) if meta is not None else {}
    meta_text = _meta_json(meta)
    record = json.dumps({"layout": LAYOUT_TAG, "meta": meta}, sort_keys=True)

    if _FORMATS[suffix] == "hdf5":
        def write(tmp: str) -> None:
            with h5py.File(tmp, "w") as file:
                for name, array in (("x", xa), ("y", ya)):
                    per_sample = array[:1].nbytes
                    chunks = (1,) + array.shape[1:] if per_sample < 2**31 else True
                    file.create_dataset(name, data=array, chunks=chunks)
                file.attrs["layout"] = LAYOUT_TAG
                file.attrs["meta"] = meta_text
                if isinstance(meta.get("name"), str):
                    file.attrs["generator"] = meta["name"]
        atomic_write(path, write)
    elif _FORMATS[suffix] == "npz":
        def write(tmp: str) -> None:
            with open(tmp, "wb") as file:  # a file object: np.savez adds no suffix
                np.savez(file, x=xa, y=ya, **{META_KEY: np.array(record)})
        atomic_write(path, write)
    else:
        record_tensor = torch.frombuffer(bytearray(record.encode("utf-8")), dtype=torch.uint8)
        atomic_save({"x": torch.from_numpy(xa), "y": torch.from_numpy(ya),
                     META_KEY: record_tensor.clone()}, path)
    return path


def save_series(path: str | os.PathLike, trajectories: Any,
                meta: Mapping[str, Any] | None = None) -> Path:
    """Write trajectories ``(n, n_times, *grid)`` to an HDF5 file, atomically.

    The layout is PDEBench's single-variable time series (a dataset ``tensor``, chunked one
    trajectory per chunk), so :class:`PairFile` reads it with ``history``/``horizon``
    windows; ``meta`` is stored as JSON in the attribute ``meta``, as by :func:`save_pairs`.
    """
    path = Path(path)
    if _FORMATS.get(path.suffix.lower()) != "hdf5":
        raise ValueError(f"{path}: time series are written as HDF5; use a .h5 or .hdf5 name")
    array = _as_array(trajectories, "trajectories")
    if array.ndim < 3 or 0 in array.shape:
        raise ValueError(f"trajectories have shape {array.shape}; expected (n, n_times, *grid)")
    meta_text = _meta_json(dict(meta or {}))

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as file:
            file.create_dataset("tensor", data=array, chunks=(1,) + array.shape[1:])
            file.attrs["meta"] = meta_text

    atomic_write(path, write)
    return path


# --------------------------------------------------------------------------------------------
# describing


def _fmt_shape(shape: Sequence[int]) -> str:
    return str(tuple(int(s) for s in shape))


def _contents(path: Path, fmt: str, files: Mapping[str, Path]) -> tuple[list[str], list[str]]:
    """Lines listing what a file holds, and lines of its attributes."""
    lines: list[str] = []
    attrs: list[str] = []
    if fmt == "hdf5":
        try:
            file = h5py.File(path, "r")
        except OSError as err:
            raise _corrupt(path, "HDF5 file", err, ("hdf5",)) from None
        with file:
            datasets: list[tuple[str, h5py.Dataset]] = []
            n_groups = 0

            def visit(name: str, obj: Any) -> None:
                nonlocal n_groups
                if isinstance(obj, h5py.Dataset):
                    datasets.append((name, obj))
                else:
                    n_groups += 1

            file.visititems(visit)
            for name, ds in datasets[:_LISTED]:
                chunks = f"  chunks {_fmt_shape(ds.chunks)}" if ds.chunks else ""
                lines.append(f"  {name:<20} {str(ds.dtype):<8} {_fmt_shape(ds.shape)}{chunks}")
            if len(datasets) > _LISTED:
                lines.append(f"  ... {len(datasets) - _LISTED} more datasets")
            if n_groups:
                lines.append(f"  ({len(datasets)} datasets in {n_groups} groups)")
            for key, value in file.attrs.items():
                text = value.decode() if isinstance(value, bytes) else str(value)
                attrs.append(f"  {key} = {text if len(text) <= 200 else text[:197] + '...'}")
    elif fmt == "npz":
        for name, (shape, dtype) in _npz_headers(path).items():
            lines.append(f"  {name:<20} {str(dtype):<8} {_fmt_shape(shape)}")
    elif fmt == "npy":
        for name in ("x", "y"):
            try:
                with open(files[name], "rb") as fh:
                    shape, dtype = _npy_header(fh)
            except (ValueError, OSError, EOFError) as err:
                raise _corrupt(files[name], ".npy array", err, ("npy",)) from None
            lines.append(f"  {files[name].name:<20} {str(dtype):<8} {_fmt_shape(shape)}")
    else:
        for key, value in _load_pt(path).items():
            if isinstance(value, torch.Tensor):
                lines.append(f"  {str(key):<20} {str(value.dtype).replace('torch.', ''):<8} "
                             f"{_fmt_shape(value.shape)}")
            else:
                lines.append(f"  {str(key):<20} {type(value).__name__}")
    return lines, attrs


_LAYOUT_NAMES = {
    "pairs": "x/y pairs",
    "pdebench-darcy": "PDEBench Darcy flow",
    "series": "time series",
    "pdebench-groups": "PDEBench per-sample groups",
}


def describe_file(path: str | os.PathLike) -> str:
    """A human-readable summary of a data file, for ``nol-fast data info FILE``.

    Lists the format, every dataset/array with its dtype and shape (HDF5: chunking and root
    attributes too), then how :class:`PairFile` reads it: the layout, number of samples,
    channels and grid of x and y, and the stored generator metadata. A file whose layout is
    not recognised is still listed, with the reason. Raises what :class:`PairFile` raises for
    a missing, unsupported or unreadable file.

    Examples
    --------
    >>> print(describe_file("heat.h5"))  # doctest: +SKIP
    file: heat.h5
    format: hdf5
    contents:
      x                    float32  (4, 1, 8)  chunks (1, 1, 8)
      y                    float32  (4, 1, 8)  chunks (1, 1, 8)
    ...
    """
    path = Path(path)
    fmt, files = _resolve(path)
    contents, attrs = _contents(path, fmt, files)
    lines = [f"file: {path}", f"format: {fmt}", "contents:", *contents]
    if attrs:
        lines += ["attributes:", *attrs]
    try:
        data = PairFile(path)
    except DataFileError:
        raise
    except (ValueError, KeyError) as err:
        lines.append(f"layout: not recognised: {err}")
        return "\n".join(lines)
    lines.append(f"layout: {_LAYOUT_NAMES.get(data.layout, data.layout)} "
                 f"(x = {data.keys['x']}, y = {data.keys['y']})")
    lines.append(f"samples: {data.n_samples}")
    for name in ("x", "y"):
        shape = data.shapes[name]
        lines.append(f"{name}: {shape[1]} channel{'s' if shape[1] != 1 else ''} on grid "
                     f"{_fmt_shape(shape[2:])} (sample shape {_fmt_shape(shape[1:])}, float32)")
    if data.layout in ("series", "pdebench-groups"):
        lines.append("time steps: x = first step, y = last step by default; choose windows "
                     "with history/horizon")
    if data.meta:
        if isinstance(data.meta.get("name"), str):
            lines.append(f"generator: {data.meta['name']}")
        lines.append(f"meta: {json.dumps(data.meta, sort_keys=True)}")
    elif data.cache_name is not None:
        lines.append(f"generator: {data.cache_name} (dataset cache file)")
    return "\n".join(lines)
