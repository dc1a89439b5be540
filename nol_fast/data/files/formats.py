"""The registry of file formats: which :class:`FormatReader` opens a path.

A format is chosen by the path's extension (lower-cased); a directory is read by a format
stored as directories (``.npy`` pairs). :func:`register_format` adds a format, or replaces
the one registered for the same extension; the built-in ones are registered by
:mod:`nol_fast.data.files`.
"""

from __future__ import annotations

from pathlib import Path

from nol_fast.data.files.reader import FormatReader

# Reader of each extension, in the order registered.
_READERS: dict[str, type[FormatReader]] = {}


def register_format(reader: type[FormatReader]) -> type[FormatReader]:
    """Read files with the extensions ``reader.suffixes`` through ``reader``.

    Parameters
    ----------
    reader : subclass of FormatReader
        The format's reader class (see :class:`~nol_fast.data.files.FormatReader`).

    Returns
    -------
    type
        ``reader``, so that this works as a class decorator too.

    Examples
    --------
    >>> register_format(JsonReader)  # doctest: +SKIP
    >>> PairFile("pairs.json").shapes  # doctest: +SKIP
    {'x': (4, 1, 16), 'y': (4, 1, 16)}
    """
    if not (isinstance(reader, type) and issubclass(reader, FormatReader)):
        raise TypeError(f"register_format expects a FormatReader subclass, got {reader!r}")
    for suffix in reader.suffixes:
        if not suffix.startswith(".") or suffix != suffix.lower():
            raise ValueError(f"{reader.__name__}.suffixes must be lower-case extensions "
                             f"such as '.h5', got {suffix!r}")
        _READERS[suffix] = reader
    return reader


def read_suffixes() -> tuple[str, ...]:
    """The extensions of the registered formats, in the order registered."""
    return tuple(_READERS)


def open_reader(path: Path) -> FormatReader:
    """The reader of ``path``'s format; FileNotFoundError or ValueError naming ``path``."""
    suffix = path.suffix.lower()
    directory_readers = [r for r in dict.fromkeys(_READERS.values()) if r.directory]
    if path.is_dir() and directory_readers:
        matching = [r for r in directory_readers if suffix in r.suffixes]
        return (matching or directory_readers)[0](path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such data file")
    if suffix not in _READERS:
        directories = "".join(f" or {r.directory}" for r in directory_readers)
        raise ValueError(f"{path}: unknown data file extension {path.suffix!r}; supported: "
                         f"{', '.join(_READERS)}{directories}")
    return _READERS[suffix](path)
