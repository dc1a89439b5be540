"""Files of (x, y) sample pairs: read users' PDE data, write our own, describe any of them.

:class:`PairFile` serves the samples of one file as ``(x, y)`` float32 tensors of shape
``(channels, *grid)``, the per-sample layout of the datasets of :mod:`nol_fast.data.loaders`.
:func:`save_pairs` and :func:`save_series` write such files and :func:`describe_file`
summarises one for ``nol-fast data info FILE``.

The format is chosen by the extension, and the layout inside is then recognised from the
content. Each format is a :class:`FormatReader` in a module of its own:

=================================  ===================================================
:mod:`~nol_fast.data.files.hdf5`   ``.h5``/``.hdf5``: ours, PDEBench's (Darcy, time series,
                                   per-sample groups), any other by dataset name; lazy
:mod:`~nol_fast.data.files.npz`    ``.npz``: arrays ``x`` and ``y`` (or named); memory-mapped
:mod:`~nol_fast.data.files.npy`    ``NAME_x.npy`` with ``NAME_y.npy``, or a directory of
                                   ``x.npy`` and ``y.npy``; memory-mapped
:mod:`~nol_fast.data.files.pt`     ``.pt``/``.pth``: dicts of tensors (neuraloperator's, the
                                   dataset cache's, ours), ``weights_only``
=================================  ===================================================

How arrays become samples (pairs, time-series windows, the channel dimension) is the same for
every format: :mod:`~nol_fast.data.files.layout`. Errors:
:mod:`~nol_fast.data.files.errors`. Stored metadata: :mod:`~nol_fast.data.files.metadata`.

A new format is a :class:`FormatReader` subclass in a file of its own plus one line,
``register_format(MyReader)``: :class:`PairFile`, ``dataset: file`` and
:func:`describe_file` then read it.
"""

from nol_fast.data.files.describe import describe_file
from nol_fast.data.files.errors import DataFileError, MissingKeyError
from nol_fast.data.files.formats import read_suffixes, register_format
from nol_fast.data.files.hdf5 import Hdf5Reader
from nol_fast.data.files.layout import MAX_DETECTED_CHANNELS
from nol_fast.data.files.metadata import LAYOUT_TAG, META_KEY
from nol_fast.data.files.npy import NpyReader
from nol_fast.data.files.npz import NpzReader
from nol_fast.data.files.pair_file import PairFile
from nol_fast.data.files.pt import TorchReader
from nol_fast.data.files.reader import ArrayInfo, FormatReader
from nol_fast.data.files.writers import WRITE_SUFFIXES, save_pairs, save_series

# The built-in formats, in the order their extensions are listed in messages.
register_format(Hdf5Reader)
register_format(NpzReader)
register_format(NpyReader)
register_format(TorchReader)

#: Extensions :class:`PairFile` reads out of the box (a directory of ``.npy`` files too);
#: :func:`register_format` adds more.
READ_SUFFIXES = read_suffixes()

__all__ = [
    "LAYOUT_TAG",
    "MAX_DETECTED_CHANNELS",
    "META_KEY",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "ArrayInfo",
    "DataFileError",
    "FormatReader",
    "MissingKeyError",
    "PairFile",
    "describe_file",
    "register_format",
    "save_pairs",
    "save_series",
]
