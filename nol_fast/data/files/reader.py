"""The interface every file format implements: :class:`FormatReader`.

A reader opens one file of its format and answers three questions: which arrays it holds,
with their shapes and dtypes (:meth:`FormatReader.arrays`); what metadata was stored with them
(:attr:`FormatReader.meta`); and what rows ``i, j, ...`` of an array hold
(:meth:`FormatReader.read`), without reading the rest where the format allows. Everything
else — which arrays make x and y, channel dimensions, time windows, batching, float32 — is
done once for all formats by :class:`~nol_fast.data.files.PairFile`, and the summary of
``nol-fast data info`` by :func:`~nol_fast.data.files.describe_file`.

A new format is a subclass in a module of its own, registered with
:func:`~nol_fast.data.files.register_format`; the smallest one implements :meth:`arrays`
and :meth:`load`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from nol_fast.data.files.errors import MissingKeyError, name_list

if TYPE_CHECKING:
    from nol_fast.data.files.layout import Layout, Request

#: Kinds of numpy dtype served as samples: booleans, integers and floating point.
NUMERIC_KINDS = "biuf"


@dataclass(frozen=True)
class ArrayInfo:
    """What a file says of one of its arrays, without reading it."""

    shape: tuple[int, ...]
    dtype: np.dtype


class FormatReader(ABC):
    """One data file, opened for reading in one format.

    Subclasses set the class attributes, fill :attr:`meta` (and :attr:`stores_channels`) in
    ``__init__`` from what the file stores, and implement :meth:`arrays` and :meth:`load`.
    Opening reads no array data. Loaded arrays are kept per process: they are dropped by
    :meth:`close` and when the reader is pickled (DataLoader workers load their own).

    Parameters
    ----------
    path : Path
        The file (or directory) to read; the registry has checked that it exists.

    Attributes
    ----------
    format : str
        The format's name, e.g. ``'hdf5'`` (class attribute).
    suffixes : tuple of str
        The lower-case extensions it reads, e.g. ``('.h5', '.hdf5')`` (class attribute).
    directory : str or None
        For formats stored as a directory: what one holds, for messages, e.g. ``'a directory
        holding x.npy and y.npy'`` (class attribute). A directory whose extension is one of
        :attr:`suffixes` is read by this format, any other by the first such format.
    noun : str
        What the format calls its arrays in messages: ``'array'``, ``'dataset'``, ``'key'``.
    meta : dict
        The generator's name and parameters stored with the arrays, else ``{}``.
    stores_channels : bool
        True when the arrays are known to be stored ``(n, c, *grid)`` (files written by
        ``save_pairs``, dataset cache files), so no channel dimension is detected.
    cache_name : str or None
        The dataset's name when the file is one of the dataset cache's.

    Examples
    --------
    A format of JSON files holding ``{"x": [...], "y": [...]}`` (docs/data.md, "Adding a
    format"):

    >>> class JsonReader(FormatReader):  # doctest: +SKIP
    ...     format, suffixes = "json", (".json",)
    ...     def __init__(self, path):
    ...         super().__init__(path)
    ...         self._data = {k: np.asarray(v) for k, v in json.loads(path.read_text()).items()}
    ...     def arrays(self):
    ...         return {k: ArrayInfo(v.shape, v.dtype) for k, v in self._data.items()}
    ...     def load(self, key):
    ...         return self._data[key]
    >>> register_format(JsonReader)  # doctest: +SKIP
    """

    format: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    directory: ClassVar[str | None] = None
    noun: ClassVar[str] = "array"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta: dict[str, Any] = {}
        self.stores_channels = False
        self.cache_name: str | None = None
        self._arrays: dict[str, Any] = {}  # loaded by load(), per process

    @abstractmethod
    def arrays(self) -> Mapping[str, ArrayInfo]:
        """Every array of the file by name, with its shape and dtype; reads no data."""

    @abstractmethod
    def load(self, key: str) -> Any:
        """Array ``key``, indexable like a numpy array: a memory map or an on-disk dataset
        where the format allows it, so that only the rows read are loaded."""

    def array(self, key: str) -> ArrayInfo:
        """Shape and dtype of array ``key``; :class:`MissingKeyError` lists those present."""
        arrays = self.arrays()
        if key not in arrays:
            raise MissingKeyError(f"{self.path}: no {self.noun} {key!r}; {self.noun}s present: "
                                  f"{name_list(arrays)}")
        return arrays[key]

    def layout(self, request: Request) -> Layout:
        """Which arrays serve x and y: ``request``'s keys, ``'x'`` and ``'y'`` by default.
        Formats with layouts of their own (PDEBench's HDF5 files) recognise them here."""
        return request.keyed(self.array, self.stores_channels)

    def read(self, key: str, rows: np.ndarray, steps: tuple[int, int] | None) -> np.ndarray:
        """Rows ``rows`` (sorted, distinct) of array ``key``, a copy; with ``steps``, only the
        time steps ``[start, stop)`` of axis 1."""
        if key not in self._arrays:
            self._arrays[key] = self.load(key)
        return self._arrays[key][(rows,) + time_window(steps)]

    def contents(self) -> tuple[list[str], list[str]]:
        """Lines listing the file's arrays, and lines of its attributes (none by default),
        for :func:`~nol_fast.data.files.describe_file`."""
        return [content_line(name, str(info.dtype), info.shape)
                for name, info in self.arrays().items()], []

    def close(self) -> None:
        """Drop this process's open handles and loaded arrays; they are reopened on use."""
        self._arrays = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without loaded arrays: each process loads its own."""
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state


def time_window(steps: tuple[int, int] | None) -> tuple[slice, ...]:
    """The index of the time steps ``[start, stop)`` on axis 1 after the rows; ``()`` if all."""
    return () if steps is None else (slice(*steps),)


def format_shape(shape: Sequence[int]) -> str:
    return str(tuple(int(s) for s in shape))


def content_line(name: str, dtype: str, shape: Sequence[int], extra: str = "") -> str:
    """One array of :meth:`FormatReader.contents`: name, dtype, shape and ``extra``."""
    return f"  {name:<20} {dtype:<8} {format_shape(shape)}{extra}"


def tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A CPU tensor as a numpy array (a view where numpy has the dtype)."""
    tensor = tensor.detach()
    try:
        return tensor.numpy()
    except TypeError:  # bfloat16, float8...: no numpy dtype
        return tensor.float().numpy()
