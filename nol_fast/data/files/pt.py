"""``.pt``/``.pth`` files: dicts of tensors, such as neuraloperator's data sets.

A dict with tensors ``x`` and ``y`` (or ``x_key``/``y_key``; ``x_key`` alone: a time series)
read with ``torch.load(weights_only=True)``, which never runs pickled code: neuraloperator's
files (``(n, *grid)`` arrays, whose channel dimension is detected), our dataset cache's
files (:mod:`nol_fast.data.cache`, named ``NAME-<32 hex digits>.pt``, stored ``(n, c, *grid)``)
and :func:`~nol_fast.data.files.save_pairs`'s (metadata in the uint8 tensor
:data:`~nol_fast.data.files.metadata.META_KEY`). Memory-mapped where the file format allows
it. Entries other than tensors may sit next to the arrays; only those read must be tensors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nol_fast.data.files.errors import DataFileError, MissingKeyError, name_list, unreadable
from nol_fast.data.files.metadata import META_KEY, parse_record
from nol_fast.data.files.reader import ArrayInfo, FormatReader, content_line, tensor_to_numpy

_CACHE_NAME = re.compile(r"^(?P<name>.+)-[0-9a-f]{32}\.pt$")


class TorchReader(FormatReader):
    """A dict saved with ``torch.save``; its tensors are the arrays."""

    format = "pt"
    suffixes = (".pt", ".pth")
    noun = "key"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._entries: dict[Any, Any] | None = _load(path)  # kept until close(), per process
        found = _record(self._entries)
        match = _CACHE_NAME.match(path.name)
        if found is not None:
            self.meta = found
        elif match:
            self.cache_name = match.group("name")
        self.stores_channels = found is not None or self.cache_name is not None

    def _loaded(self) -> dict[Any, Any]:
        if self._entries is None:
            self._entries = _load(self.path)
        return self._entries

    def arrays(self) -> dict[str, ArrayInfo]:
        """The tensors (other entries are not arrays)."""
        return {str(key): ArrayInfo(tuple(value.shape), _numpy_dtype(value.dtype))
                for key, value in self._loaded().items() if isinstance(value, torch.Tensor)}

    def array(self, key: str) -> ArrayInfo:
        """Like :meth:`FormatReader.array`; also refuses entries that are not real tensors."""
        entries = self._loaded()
        if key not in entries:
            raise MissingKeyError(f"{self.path}: no key {key!r}; keys present: "
                                  f"{name_list(str(k) for k in entries)}")
        value = entries[key]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{self.path}: {key!r} is a {type(value).__name__}, not a tensor")
        if value.is_complex():
            raise ValueError(f"{self.path}: tensor {key!r} has non-real dtype {value.dtype} "
                             f"(shape {tuple(value.shape)}); expected integer or "
                             f"floating-point data")
        return ArrayInfo(tuple(value.shape), _numpy_dtype(value.dtype))

    def load(self, key: str) -> np.ndarray:
        return tensor_to_numpy(self._loaded()[key])

    def contents(self) -> tuple[list[str], list[str]]:
        """Every entry: tensors with dtype and shape, other values with their type."""
        lines = []
        for key, value in self._loaded().items():
            if isinstance(value, torch.Tensor):
                lines.append(content_line(str(key), str(value.dtype).replace("torch.", ""),
                                          value.shape))
            else:
                lines.append(f"  {str(key):<20} {type(value).__name__}")
        return lines, []

    def close(self) -> None:
        self._entries = None
        super().close()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_entries"] = None
        return state


def _load(path: Path) -> dict[Any, Any]:
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
        raise unreadable(path, "torch file with weights_only=True", err,
                         ("zip", "pickle")) from None
    if not isinstance(obj, dict):
        raise DataFileError(f"{path}: expected a dict of tensors with keys such as 'x' and "
                            f"'y', got a {type(obj).__name__}")
    return obj


def _record(entries: dict[Any, Any]) -> dict[str, Any] | None:
    """The :func:`~nol_fast.data.files.save_pairs` record, or None if not ours."""
    record = entries.get(META_KEY)
    if not isinstance(record, torch.Tensor) or record.dtype != torch.uint8:
        return None
    return parse_record(bytes(record.numpy().tobytes()).decode("utf-8", errors="replace"))


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The numpy dtype a tensor of ``dtype`` is read as (see :func:`tensor_to_numpy`)."""
    return tensor_to_numpy(torch.empty(0, dtype=dtype)).dtype
