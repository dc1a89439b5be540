"""PairFile: the ``(x, y)`` samples of a data file of any registered format, as a Dataset."""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nol_fast.data.files.errors import DataFileError, short_reason
from nol_fast.data.files.formats import open_reader
from nol_fast.data.files.layout import Request, Source


class PairFile(Dataset):
    """The ``(x, y)`` samples of a data file, as float32 tensors with a channel dimension.

    Parameters
    ----------
    path : path
        A ``.h5``/``.hdf5``, ``.npz``, ``.pt``/``.pth`` or ``NAME_x.npy`` file, a directory
        holding ``x.npy`` and ``y.npy``, or a file of a registered format; layouts in
        :mod:`nol_fast.data.files`.
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
        channels; the default detects it (:mod:`nol_fast.data.files.layout`).

    Attributes
    ----------
    format : str
        ``'hdf5'``, ``'npz'``, ``'npy'`` or ``'pt'`` (or a registered format's name).
    layout : str
        ``'pairs'``, ``'pdebench-darcy'``, ``'series'`` or ``'pdebench-groups'``.
    n_samples : int
        Number of samples (trajectories for time series).
    shapes : dict
        ``{'x': (n, c_x, *grid_x), 'y': (n, c_y, *grid_y)}``, the shapes as served.
    keys : dict
        ``{'x': ..., 'y': ...}``: where each comes from, e.g. ``"tensor[0:1]"``.
    meta : dict
        The generator's name and parameters stored by
        :func:`~nol_fast.data.files.save_pairs` or :func:`~nol_fast.data.files.save_series`,
        else ``{}``.

    Notes
    -----
    Opening reads metadata only; the file's reader loads arrays on first use in each
    process and drops them (and its handles) when the object is pickled, so the object works
    in DataLoader workers whether they are forked or spawned. :meth:`take` reads a batch in
    one sorted read per array; ``__getitems__`` lets a DataLoader use it for whole batches.

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
        request = Request(self.path, x_key, y_key, history, horizon, add_channel_dim)
        self.history = request.history
        self.horizon = request.horizon
        self._reader = open_reader(self.path)
        self.format = self._reader.format
        self.meta = self._reader.meta
        self.cache_name = self._reader.cache_name
        layout = self._reader.layout(request)
        self.layout = layout.name
        self.keys = layout.keys
        self.n_samples = layout.n_samples
        self._x, self._y = layout.x, layout.y

    def close(self) -> None:
        """Close this process's file handle and drop loaded arrays (reopened on use)."""
        self._reader.close()

    def __enter__(self) -> PairFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        for name, source in (("x", self._x), ("y", self._y)):
            rows = self._read(source, unique)
            if len(unique) != len(idx) or not np.array_equal(unique, idx):
                rows = rows[inverse.reshape(-1)]
            out[name] = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
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

    def _read(self, source: Source, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (sorted, distinct) of one source, as ``(m, c, *grid)``."""
        if len(idx) == 0:
            return np.zeros((0,) + source.served[1:], dtype=np.float32)
        try:
            rows = self._reader.read(source.key, idx, source.steps)
        except (OSError, KeyError) as err:
            raise DataFileError(f"{self.path}: reading {source.key!r} failed "
                                f"({short_reason(err)})") from None
        return source.serve(rows)

    def __repr__(self) -> str:
        return (f"PairFile({str(self.path)!r}, format={self.format!r}, layout={self.layout!r}, "
                f"n_samples={self.n_samples}, x={self.shapes['x'][1:]}, "
                f"y={self.shapes['y'][1:]})")
