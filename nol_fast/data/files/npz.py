"""``.npz`` archives: arrays ``x`` and ``y``, or others named by ``x_key``/``y_key``.

``x_key`` alone names a time series. Only the array headers are read when opening; arrays of
uncompressed archives (``np.savez``) are then memory-mapped, those of compressed ones read
whole on first access. Archives written by :func:`~nol_fast.data.files.save_pairs` hold their
metadata in the string array :data:`~nol_fast.data.files.metadata.META_KEY`.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from nol_fast.data.files.errors import unreadable
from nol_fast.data.files.metadata import META_KEY, parse_record
from nol_fast.data.files.npy import read_header, read_header_full
from nol_fast.data.files.reader import ArrayInfo, FormatReader

# What a failing zip archive or a .npy member of it raises.
_ZIP_ERRORS = (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError)


class NpzReader(FormatReader):
    """A ``.npz`` archive, its arrays listed from their headers."""

    format = "npz"
    suffixes = (".npz",)

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._headers = self._read_headers()
        if META_KEY in self._headers:
            found = self._read_record()
            if found is not None:
                self.meta = found
                self.stores_channels = True

    def _read_headers(self) -> dict[str, ArrayInfo]:
        headers = {}
        try:
            with zipfile.ZipFile(self.path) as archive:
                for member in archive.namelist():
                    if member.endswith(".npy"):
                        with archive.open(member) as fh:
                            headers[member[:-4]] = read_header(fh)
        except _ZIP_ERRORS as err:
            raise self._unreadable(err) from None
        return headers

    def _read_record(self) -> dict | None:
        """The :func:`~nol_fast.data.files.save_pairs` record, or None if not ours."""
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                text = str(archive[META_KEY][()])
        except Exception as err:
            raise self._unreadable(err) from None
        return parse_record(text)

    def _unreadable(self, err: BaseException) -> Exception:
        return unreadable(self.path, ".npz archive", err, ("zip",))

    def arrays(self) -> dict[str, ArrayInfo]:
        return self._headers

    def load(self, key: str) -> np.ndarray:
        """Memory-mapped when stored uncompressed (as ``np.savez`` does), so only the rows
        read are loaded; read whole when compressed."""
        try:
            with zipfile.ZipFile(self.path) as archive:
                info = archive.getinfo(f"{key}.npy")
            if info.compress_type == zipfile.ZIP_STORED:
                with open(self.path, "rb") as fh:
                    fh.seek(info.header_offset)
                    local = fh.read(30)  # the member's local header, then name and extra field
                    if local[:4] == b"PK\x03\x04":
                        name_len, extra_len = struct.unpack("<HH", local[26:30])
                        fh.seek(info.header_offset + 30 + name_len + extra_len)
                        shape, fortran, dtype = read_header_full(fh)
                        return np.memmap(self.path, dtype=dtype, mode="r", offset=fh.tell(),
                                         shape=shape, order="F" if fortran else "C")
            with np.load(self.path, allow_pickle=False) as loaded:
                return loaded[key]
        except _ZIP_ERRORS as err:
            raise self._unreadable(err) from None
