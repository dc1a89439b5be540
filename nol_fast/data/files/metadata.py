"""The metadata stored in data files: the generator's name and parameters, as JSON text.

HDF5 files keep it in the root attribute ``meta``; those written by
:func:`~nol_fast.data.files.save_pairs` also carry the attribute ``layout``
(:data:`LAYOUT_TAG`), which says their arrays are stored ``(n, c, *grid)``. ``.npz`` and
``.pt`` files have no attributes, so they hold one more entry, :data:`META_KEY`: the record
``{"layout": LAYOUT_TAG, "meta": {...}}`` as JSON text (a string array in ``.npz``, a uint8
tensor of UTF-8 in ``.pt``, so that the file stays a dict of tensors).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: Marks files written by ``save_pairs`` (HDF5 attribute ``layout``; the ``layout`` entry of
#: the :data:`META_KEY` record of ``.npz`` and ``.pt`` files).
LAYOUT_TAG = "nol_fast.pairs/1"

#: Name of the JSON record of ``.npz`` and ``.pt`` files written by ``save_pairs``.
META_KEY = "meta_json"


def meta_text(meta: Mapping[str, Any]) -> str:
    """``meta`` as the JSON text stored in a file; a clear error if it is not plain data."""
    try:
        return json.dumps(meta, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"meta must be plain JSON data (numbers, strings, lists, dicts), got "
                        f"{meta!r}: {err}") from None


def record_text(meta: Mapping[str, Any]) -> str:
    """The :data:`META_KEY` record of ``meta`` (checked with :func:`meta_text` first)."""
    return json.dumps({"layout": LAYOUT_TAG, "meta": dict(meta)}, sort_keys=True)


def parse_record(text: str) -> dict[str, Any] | None:
    """``{'layout': LAYOUT_TAG, 'meta': {...}}`` -> the meta dict; None if not ours."""
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if isinstance(record, dict) and record.get("layout") == LAYOUT_TAG:
        meta = record.get("meta")
        return meta if isinstance(meta, dict) else {}
    return None


def attribute_text(value: str | bytes) -> str:
    """An HDF5 string attribute as ``str`` (h5py gives bytes for fixed-length strings)."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def parse_meta(value: Any) -> dict[str, Any]:
    """The dict stored as JSON text in an HDF5 attribute; ``{}`` if it is not one."""
    if isinstance(value, bytes):
        value = attribute_text(value)
    if not isinstance(value, str):
        return {}
    try:
        meta = json.loads(value)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}
