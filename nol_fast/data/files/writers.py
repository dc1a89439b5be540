"""Writing data files: :func:`save_pairs` (``x -> y`` samples) and :func:`save_series`.

Both write atomically (a temporary file in the same directory, flushed to disk and moved into
place), so readers see the old file or the new one, never a part, and both store the
generator's metadata (:mod:`nol_fast.data.files.metadata`) so that
:class:`~nol_fast.data.files.PairFile` gives it back as ``meta``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from nol_fast.data.files.hdf5 import Hdf5Reader
from nol_fast.data.files.metadata import LAYOUT_TAG, META_KEY, meta_text, record_text
from nol_fast.data.files.npz import NpzReader
from nol_fast.data.files.reader import NUMERIC_KINDS, tensor_to_numpy
from nol_fast.serialization import atomic_save, atomic_write

#: Extensions :func:`save_pairs` writes.
WRITE_SUFFIXES = (".h5", ".hdf5", ".npz", ".pt", ".pth")


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
    text = meta_text(meta)

    if suffix in Hdf5Reader.suffixes:
        def write(tmp: str) -> None:
            with h5py.File(tmp, "w") as file:
                for name, array in (("x", xa), ("y", ya)):
                    per_sample = array[:1].nbytes
                    chunks = (1,) + array.shape[1:] if per_sample < 2**31 else True
                    file.create_dataset(name, data=array, chunks=chunks)
                file.attrs["layout"] = LAYOUT_TAG
                file.attrs["meta"] = text
                if isinstance(meta.get("name"), str):
                    file.attrs["generator"] = meta["name"]
        atomic_write(path, write)
    elif suffix in NpzReader.suffixes:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as file:  # a file object: np.savez adds no suffix
                np.savez(file, x=xa, y=ya, **{META_KEY: np.array(record_text(meta))})
        atomic_write(path, write)
    else:
        record = torch.frombuffer(bytearray(record_text(meta).encode("utf-8")),
                                  dtype=torch.uint8)
        atomic_save({"x": torch.from_numpy(xa), "y": torch.from_numpy(ya),
                     META_KEY: record.clone()}, path)
    return path


def save_series(path: str | os.PathLike, trajectories: Any,
                meta: Mapping[str, Any] | None = None) -> Path:
    """Write trajectories ``(n, n_times, *grid)`` to an HDF5 file, atomically.

    The layout is PDEBench's single-variable time series (a dataset ``tensor``, chunked one
    trajectory per chunk), so :class:`~nol_fast.data.files.PairFile` reads it with
    ``history``/``horizon`` windows; ``meta`` is stored as JSON in the attribute ``meta``, as
    by :func:`save_pairs`.

    Examples
    --------
    >>> save_series("ns.h5", torch.zeros(2, 11, 64, 64),
    ...             meta={"name": "navier_stokes"})  # doctest: +SKIP
    PosixPath('ns.h5')
    """
    path = Path(path)
    if path.suffix.lower() not in Hdf5Reader.suffixes:
        raise ValueError(f"{path}: time series are written as HDF5; use a .h5 or .hdf5 name")
    array = _as_array(trajectories, "trajectories")
    if array.ndim < 3 or 0 in array.shape:
        raise ValueError(f"trajectories have shape {array.shape}; expected (n, n_times, *grid)")
    text = meta_text(dict(meta or {}))

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as file:
            file.create_dataset("tensor", data=array, chunks=(1,) + array.shape[1:])
            file.attrs["meta"] = text

    atomic_write(path, write)
    return path


def _as_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a C-contiguous numpy array of real numbers; ValueError otherwise."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise ValueError(f"{name} has non-real dtype {value.dtype} (shape "
                             f"{tuple(value.shape)}); expected integer or floating-point data")
        value = tensor_to_numpy(value.detach().cpu().contiguous())
    array = np.asarray(value)
    if array.dtype.kind not in NUMERIC_KINDS:
        raise ValueError(f"{name} has non-numeric dtype {array.dtype} (shape {array.shape}); "
                         f"expected integer or floating-point data")
    return np.ascontiguousarray(array)
