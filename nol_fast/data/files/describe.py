"""describe_file: what a data file holds and how it is read, for ``nol-fast data info FILE``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nol_fast.data.files.errors import DataFileError
from nol_fast.data.files.formats import open_reader
from nol_fast.data.files.pair_file import PairFile
from nol_fast.data.files.reader import format_shape

_LAYOUT_NAMES = {
    "pairs": "x/y pairs",
    "pdebench-darcy": "PDEBench Darcy flow",
    "series": "time series",
    "pdebench-groups": "PDEBench per-sample groups",
}


def describe_file(path: str | os.PathLike) -> str:
    """A human-readable summary of a data file, for ``nol-fast data info FILE``.

    Lists the format, every dataset/array with its dtype and shape (HDF5: chunking and root
    attributes too), then how :class:`~nol_fast.data.files.PairFile` reads it: the layout,
    number of samples, channels and grid of x and y, and the stored generator metadata. A
    file whose layout is not recognised is still listed, with the reason. Raises what
    :class:`~nol_fast.data.files.PairFile` raises for a missing, unsupported or unreadable
    file.

    Examples
    --------
    >>> print(describe_file("heat.h5"))  # doctest: +SKIP
    file: heat.h5
    format: hdf5
    contents:
      x                    float32  (4, 1, 8)  chunks (1, 1, 8)
      y                    float32  (4, 1, 8)  chunks (1, 1, 8)
    ...
    """
    path = Path(path)
    reader = open_reader(path)
    contents, attrs = reader.contents()
    lines = [f"file: {path}", f"format: {reader.format}", "contents:", *contents]
    if attrs:
        lines += ["attributes:", *attrs]
    try:
        data = PairFile(path)
    except DataFileError:
        raise
    except (ValueError, KeyError) as err:
        lines.append(f"layout: not recognised: {err}")
        return "\n".join(lines)
    lines.append(f"layout: {_LAYOUT_NAMES.get(data.layout, data.layout)} "
                 f"(x = {data.keys['x']}, y = {data.keys['y']})")
    lines.append(f"samples: {data.n_samples}")
    for name in ("x", "y"):
        shape = data.shapes[name]
        lines.append(f"{name}: {shape[1]} channel{'s' if shape[1] != 1 else ''} on grid "
                     f"{format_shape(shape[2:])} (sample shape {format_shape(shape[1:])}, "
                     f"float32)")
    if data.layout in ("series", "pdebench-groups"):
        lines.append("time steps: x = first step, y = last step by default; choose windows "
                     "with history/horizon")
    if data.meta:
        if isinstance(data.meta.get("name"), str):
            lines.append(f"generator: {data.meta['name']}")
        lines.append(f"meta: {json.dumps(data.meta, sort_keys=True)}")
    elif data.cache_name is not None:
        lines.append(f"generator: {data.cache_name} (dataset cache file)")
    return "\n".join(lines)
