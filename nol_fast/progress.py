"""Progress bars for long work, shown where someone watches a terminal.

Training epochs and data generation report progress alike: on a terminal (stderr is a TTY)
by default, always with ``progress=True``, never with ``progress=False``. Bars go to stderr,
so output that is piped or logged stays clean.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def shows_progress(progress: bool | None) -> bool:
    """Whether to show a bar: ``progress`` when given, else whether stderr is a terminal."""
    if progress is not None and not isinstance(progress, bool):
        raise ValueError(f"progress must be True, False or None, got {progress!r}")
    if progress is None:
        return sys.stderr is not None and sys.stderr.isatty()
    return progress


def open_bar(total: int | None, desc: str, *, unit: str = "batch", leave: bool = True) -> Any:
    """A tqdm bar on stderr (``total=None``: a counter without a known end)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)


@contextmanager
def progress_bar(
    total: int, desc: str, progress: bool | None, unit: str = "batch"
) -> Iterator[Any]:
    """A bar (see :func:`open_bar`) if :func:`shows_progress`, else ``None``; closed on exit."""
    if not shows_progress(progress):
        yield None
        return
    bar = open_bar(total, desc, unit=unit)
    try:
        yield bar
    finally:
        bar.close()
