"""``.npy`` pairs: ``NAME_x.npy`` next to ``NAME_y.npy``, or a directory of ``x.npy``/``y.npy``.

Either a directory holding ``x.npy`` and ``y.npy``, or the path of one of ``NAME_x.npy`` and
``NAME_y.npy`` (``x.npy``/``y.npy`` too): the other file is found by swapping the final
``x``/``y`` of the name. Opening reads the two headers; both arrays are memory-mapped, so
reads are lazy. The ``.npy`` header readers here serve the ``.npz`` format too.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from nol_fast.data.files.errors import unreadable
from nol_fast.data.files.layout import Layout, Request
from nol_fast.data.files.reader import ArrayInfo, FormatReader, content_line


class NpyReader(FormatReader):
    """Two ``.npy`` files, the arrays ``x`` and ``y``."""

    format = "npy"
    suffixes = (".npy",)
    directory = "a directory holding x.npy and y.npy"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.files = _pair_files(path)
        self._headers = {}
        for name, file in self.files.items():
            try:
                with open(file, "rb") as fh:
                    self._headers[name] = read_header(fh)
            except (ValueError, OSError, EOFError) as err:
                raise unreadable(file, ".npy array", err, ("npy",)) from None

    def arrays(self) -> dict[str, ArrayInfo]:
        return self._headers

    def layout(self, request: Request) -> Layout:
        if request.x_key is not None or request.y_key is not None:
            raise ValueError(f"{self.path}: x_key/y_key do not apply to .npy pairs, whose "
                             f"arrays are the files {self.files['x'].name} and "
                             f"{self.files['y'].name}")
        return super().layout(request)

    def load(self, key: str) -> np.memmap:
        return np.load(self.files[key], mmap_mode="r", allow_pickle=False)

    def contents(self) -> tuple[list[str], list[str]]:
        """The two files, x first."""
        return [content_line(self.files[name].name, str(self._headers[name].dtype),
                             self._headers[name].shape) for name in ("x", "y")], []


def read_header_full(fh: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from a ``.npy`` stream's header; the stream is left at
    the start of the data."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    return tuple(int(s) for s in shape), bool(fortran), dtype


def read_header(fh: BinaryIO) -> ArrayInfo:
    """Shape and dtype from the header of a ``.npy`` stream, without reading the data."""
    shape, _, dtype = read_header_full(fh)
    return ArrayInfo(shape, dtype)


def _pair_files(path: Path) -> dict[str, Path]:
    """``{'x': ..., 'y': ...}``: the two files of the pair ``path`` names."""
    if path.is_dir():
        files = {"x": path / "x.npy", "y": path / "y.npy"}
        for file in files.values():
            if not file.is_file():
                raise FileNotFoundError(f"{file}: no such file; a directory of .npy pairs "
                                        f"holds x.npy and y.npy")
        return files
    stem = path.stem
    if stem in ("x", "y") or stem.endswith(("_x", "_y")):
        role = stem[-1]
        other_role = "y" if role == "x" else "x"
        other = path.with_name(stem[:-1] + other_role + path.suffix)
        if not other.is_file():
            raise FileNotFoundError(f"{other}: no such file; it holds the {other_role} of "
                                    f"{path.name}")
        return {role: path, other_role: other}
    raise ValueError(f"{path}: a .npy pair is NAME_x.npy with NAME_y.npy (or x.npy with y.npy, "
                     f"or their directory); {path.name!r} does not end in _x or _y")
