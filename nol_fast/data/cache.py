"""On-disk cache of generated datasets.

Generating a dataset can take longer than an epoch, and every process of a run needs the same
tensors, so generated datasets are stored once per (name, parameters) and read back after.

* The key is the SHA-256 of canonical JSON of the name, the parameters and
  :data:`CACHE_FORMAT_VERSION` (bumped when a generator's output changes), so any change of a
  parameter selects a different file.
* The directory is ``$NOL_FAST_CACHE_DIR``, else ``~/.cache/nol_fast``.
* Files are written atomically (a temporary file in the same directory, flushed, fsynced and
  moved into place with ``os.replace``): readers, including other processes generating the
  same dataset, never see a partial file.
* Files are read with ``torch.load(weights_only=True)``, which loads tensors but never runs
  pickled code. An unreadable file is regenerated with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from nol_fast.serialization import atomic_save

logger = logging.getLogger(__name__)

#: Part of every key; bump it when the output of a generator changes for the same parameters.
CACHE_FORMAT_VERSION = 1

CACHE_DIR_ENV = "NOL_FAST_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$NOL_FAST_CACHE_DIR`` if set, else ``~/.cache/nol_fast``.

    Examples
    --------
    >>> default_cache_dir().name  # doctest: +SKIP
    'nol_fast'
    """
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nol_fast"


def cache_key(name: str, params: Mapping[str, Any]) -> str:
    """SHA-256 hex digest identifying ``(name, params)`` and the cache format.

    ``params`` must be JSON-serialisable (numbers, strings, booleans, None, lists, dicts);
    key order does not matter and tuples hash like lists.

    Examples
    --------
    >>> cache_key("heat", {"a": 1, "b": 2}) == cache_key("heat", {"b": 2, "a": 1})
    True
    """
    try:
        text = json.dumps(
            {"name": name, "params": dict(params), "format": CACHE_FORMAT_VERSION},
            sort_keys=True, separators=(",", ":"), allow_nan=False,
        )
    except (TypeError, ValueError) as err:
        raise TypeError(f"cache parameters of '{name}' must be plain JSON data "
                        f"(numbers, strings, lists, dicts), got {dict(params)!r}: {err}") from None
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(name: str, params: Mapping[str, Any],
               cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the cache file of ``(name, params)`` under ``cache_dir`` (default above)."""
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return directory / f"{name}-{cache_key(name, params)[:32]}.pt"


def _load(path: Path) -> dict[str, torch.Tensor]:
    """Read a cache file; raise ``ValueError`` if it does not hold a dict of tensors."""
    tensors = torch.load(path, map_location="cpu", weights_only=True)
    if not (isinstance(tensors, dict)
            and all(isinstance(v, torch.Tensor) for v in tensors.values())):
        raise ValueError(f"expected a dict of tensors, got {type(tensors).__name__}")
    return tensors


def cached(
    name: str,
    params: Mapping[str, Any],
    build_fn: Callable[[], Mapping[str, torch.Tensor]],
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, torch.Tensor]:
    """Return the tensors of ``(name, params)`` from the cache, building them on a miss.

    Parameters
    ----------
    name : str
        Dataset name; also the prefix of the file name.
    params : mapping
        Everything the tensors depend on, as plain JSON data.
    build_fn : callable
        Called without arguments on a miss; returns a dict of tensors, stored on the CPU.
    cache_dir : path, optional
        Directory of the cache; :func:`default_cache_dir` when omitted.

    Returns
    -------
    dict of str to Tensor
        CPU tensors.

    Examples
    --------
    >>> data = cached("ones", {"n": 3}, lambda: {"x": torch.ones(3)})  # doctest: +SKIP
    >>> data["x"]  # doctest: +SKIP
    tensor([1., 1., 1.])
    """
    path = cache_path(name, params, cache_dir)
    if path.is_file():
        try:
            tensors = _load(path)
        except Exception as err:  # any unreadable file is rebuilt
            warnings.warn(f"cache file {path} is unreadable ({err}); regenerating it",
                          RuntimeWarning, stacklevel=2)
        else:
            logger.info("loaded cached dataset '%s' from %s", name, path)
            return tensors
    logger.info("generating dataset '%s' with %s into %s", name, dict(params), path)
    built = build_fn()
    if not (isinstance(built, Mapping)
            and all(isinstance(v, torch.Tensor) for v in built.values())):
        raise TypeError(f"build_fn of '{name}' must return a dict of tensors, "
                        f"got {type(built).__name__}")
    tensors = {key: value.detach().cpu().contiguous() for key, value in built.items()}
    atomic_save(tensors, path)
    return tensors
