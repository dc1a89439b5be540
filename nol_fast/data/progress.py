"""Progress bars of the data generators: shown where someone watches a terminal.

Generating a data set can take minutes, so the generators report progress, but only as the
training loop does: on a terminal (stderr is a TTY) by default, always with
``progress=True``, never with ``progress=False``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(
    total: int, desc: str, progress: bool | None, unit: str = "batch"
) -> Iterator[Any]:
    """A tqdm bar on stderr, or ``None`` when there is to be none; closed on exit."""
    if progress is not None and not isinstance(progress, bool):
        raise ValueError(f"progress must be True, False or None, got {progress!r}")
    show = (sys.stderr is not None and sys.stderr.isatty()) if progress is None else progress
    if not show:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()
