"""The errors of data files, and the parts of their messages.

Every error names the file and the key or shape involved: :class:`FileNotFoundError` for a
missing file, :class:`MissingKeyError` (a ``ValueError`` and a ``KeyError``) for a missing key,
:class:`DataFileError` (a ``ValueError``) for a file that cannot be read at all (truncated,
not the format its extension says, refused by ``weights_only``) and ``ValueError`` for
anything else malformed (unknown extension, different sample counts, non-numeric data, wrong
ranks, a time window longer than the series). A file that cannot be read says what its first
bytes look like, so a ``.npz`` that is really an HDF5 file is told apart from a damaged one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

#: Datasets/arrays listed by name in messages and descriptions; the rest are counted.
LISTED = 24


class DataFileError(ValueError):
    """A data file that cannot be read at all: truncated, corrupt or of another format."""


class MissingKeyError(ValueError, KeyError):
    """A dataset or array asked for (or required by the layout) is not in the file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# What the first bytes of a file look like: (signature, kind, description).
_SIGNATURES = (
    (b"\x89HDF\r\n\x1a\n", "hdf5", "an HDF5 file"),
    (b"PK\x03\x04", "zip", "a zip archive (.npz or .pt)"),
    (b"PK\x05\x06", "zip", "a zip archive (.npz or .pt)"),
    (b"\x93NUMPY", "npy", "a .npy array"),
    (b"\x80", "pickle", "a pickle (legacy .pt)"),
)


def short_reason(err: BaseException) -> str:
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


def sniff(path: Path) -> tuple[str, str]:
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


def unreadable(path: Path, what: str, err: BaseException,
               expected: tuple[str, ...] = ()) -> DataFileError:
    """The error of a file that cannot be read as ``what``; hints at what it is instead
    unless its first bytes are those of ``expected`` kinds (then it is damaged)."""
    kind, description = sniff(path)
    hint = f"; {description}" if description and kind not in expected else ""
    return DataFileError(f"{path}: not a readable {what} ({short_reason(err)}){hint}")


def name_list(names: Iterable[str]) -> str:
    """``'a', 'b', ... (n more)``: the first :data:`LISTED` names, quoted, for messages."""
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(repr(n) for n in names[:LISTED])
    return shown + (f", ... ({len(names) - LISTED} more)" if len(names) > LISTED else "")
