"""create_data_loader: the ``data`` section of a config file turned into a DataLoader.

One function builds the loaders of every dataset: the generated kinds of the registry
(:mod:`nol_fast.data.datasets`) and users' files (``dataset: file``, read by
:class:`~nol_fast.data.files.PairFile`). It checks the options, takes ``n_train + n_val +
n_test`` samples (generated once from ``seed`` and cached, or the first ones of the file),
cuts them into three disjoint contiguous splits, brings them to the requested ``resolution``,
normalises them with statistics of the training split when asked, and wraps the requested
split in a DataLoader.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from nol_fast.data.cache import cached
from nol_fast.data.datasets import generation_device
from nol_fast.data.files import PairFile
from nol_fast.data.normalization import DataNormalizer, UnitGaussian
from nol_fast.data.registry import DatasetKind, dataset_kind
from nol_fast.data.transforms import subsample, time_windows

SPLITS = ("train", "val", "test")

#: Options every dataset accepts, with their defaults.
COMMON_DEFAULTS: dict[str, Any] = {
    "dataset": "heat",
    "n_train": 1000,
    "n_val": 200,
    "n_test": 200,
    "batch_size": 32,
    "num_workers": 0,
    "seed": 0,
    "shuffle": True,
    "cache_dir": None,
    "drop_last": False,
    "normalize": False,
    "resolution": None,
}
#: Options of generated datasets only.
GENERATED_DEFAULTS: dict[str, Any] = {"generate_resolution": None}
#: Options of time series (generated with ``time_series=True``, or files).
TIME_SERIES_DEFAULTS: dict[str, Any] = {"history": 1, "horizon": 1}
#: Options of ``dataset: file``.
FILE_DEFAULTS: dict[str, Any] = {"path": None, "x_key": None, "y_key": None, "history": None,
                                 "horizon": None}
# Samples read at once when fitting a normaliser over a file.
_FIT_BATCH = 256


def _check_int(options: dict[str, Any], key: str, minimum: int, optional: bool = False):
    value = options[key]
    if optional and value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"data option '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def _check_bool(options: dict[str, Any], key: str) -> bool:
    value = options[key]
    if not isinstance(value, bool):
        raise ValueError(f"data option '{key}' must be true or false, got {value!r}")
    return value


def _cache_setting(value: Any) -> str | os.PathLike | None | bool:
    """``None`` (default directory), ``False`` (no cache) or a directory."""
    if value is False or (isinstance(value, str) and value.lower() == "none"):
        return False
    if value is None or isinstance(value, (str, os.PathLike)):
        return value
    raise ValueError(f"data option 'cache_dir' must be a path, None, False or 'none', "
                     f"got {value!r}")


def _known_options(name: str) -> dict[str, Any]:
    """Every option of dataset ``name`` with its default."""
    if name == "file":
        return {**COMMON_DEFAULTS, **FILE_DEFAULTS}
    kind = dataset_kind(name)
    series = TIME_SERIES_DEFAULTS if kind.time_series else {}
    return {**COMMON_DEFAULTS, **GENERATED_DEFAULTS, **series, **kind.defaults}


def create_data_loader(data_config: Any, split: str) -> DataLoader:
    """Build the DataLoader of one split of a dataset.

    Parameters
    ----------
    data_config : mapping or object with ``__dict__``
        The ``data`` section of a config file. Options and defaults, for every dataset:

        ``dataset`` ('heat'; see :func:`available_datasets`), ``n_train`` (1000), ``n_val``
        (200), ``n_test`` (200), ``batch_size`` (32), ``num_workers`` (0), ``seed`` (0),
        ``shuffle`` (True; train split only), ``drop_last`` (False), ``resolution`` (grid
        points per dimension served; subsampled from a finer grid, see
        :func:`~nol_fast.data.transforms.subsample_stride`), ``normalize`` (False: with True,
        inputs are served normalised per channel with statistics of the training split, and
        the loader carries the fitted :class:`~nol_fast.data.normalization.DataNormalizer`
        as ``loader.normalizer``, which the Trainer uses to decode outputs).

        Generated datasets: ``generate_resolution`` (the solver's grid, default
        ``resolution``), ``cache_dir`` (None: ``$NOL_FAST_CACHE_DIR`` or
        ``~/.cache/nol_fast``; False or 'none': no cache) and the dataset's own options
        (:mod:`nol_fast.data.datasets`); time series also ``history`` and ``horizon`` (time
        steps in the input and the target, 1 and 1).

        ``dataset: file``: ``path`` (required), ``x_key`` / ``y_key`` (datasets to read,
        for files with other names), ``history`` / ``horizon`` (for time-series files; see
        :class:`~nol_fast.data.files.PairFile`).
    split : {'train', 'val', 'test'}
        Samples ``[0, n_train)``, ``[n_train, n_train + n_val)`` or the next ``n_test``.

    Returns
    -------
    DataLoader
        Yields ``(x, y)`` float32 batches of shape ``(batch, channels, *grid)``. Every loader
        has its own ``torch.Generator`` seeded with ``seed`` (``loader.generator``): the train
        loader shuffles with it, so the order is reproducible and its state can be
        checkpointed, and no loader draws from the global generator. Memory is pinned when
        CUDA is available.

    Raises
    ------
    ValueError
        For an unknown dataset, option or split, a bad option value, an empty split, or a
        file with fewer samples than the splits need.

    Examples
    --------
    >>> loader = create_data_loader({"dataset": "heat", "n_train": 64, "resolution": 16,
    ...                              "cache_dir": False}, "train")
    >>> x, y = next(iter(loader))
    >>> x.shape
    torch.Size([32, 1, 16, 16])
    """
    # Imported here: nol_fast.config loads the training package, which imports data.
    from nol_fast.config import section_to_dict

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    given = section_to_dict(data_config)
    name = given.get("dataset", COMMON_DEFAULTS["dataset"])
    known = _known_options(name)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"unknown data option(s) {', '.join(map(repr, unknown))} for dataset "
                         f"'{name}'; known options: {', '.join(known)}")
    options = {**known, **given}
    sizes = {s: _check_int(options, f"n_{s}", 0) for s in SPLITS}
    batch_size = _check_int(options, "batch_size", 1)
    num_workers = _check_int(options, "num_workers", 0)
    seed = _check_int(options, "seed", 0)
    _check_int(options, "resolution", 1, optional=True)
    shuffle, drop_last, normalize = (_check_bool(options, key)
                                     for key in ("shuffle", "drop_last", "normalize"))
    if sizes[split] == 0:
        raise ValueError(f"split '{split}' is empty: n_{split} is 0")
    start = {"train": 0, "val": sizes["train"], "test": sizes["train"] + sizes["val"]}
    ranges = {s: range(start[s], start[s] + sizes[s]) for s in SPLITS}

    if name == "file":
        dataset, normalizer = _file_split(options, sizes, ranges, split, normalize)
    else:
        dataset, normalizer = _generated_split(name, options, sizes, ranges, split, normalize)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=split == "train" and shuffle,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
    )
    loader.normalizer = normalizer
    return loader


# --------------------------------------------------------------------------- generated data


def _generated_tensors(name: str, kind: DatasetKind, options: dict[str, Any],
                       total: int) -> dict[str, torch.Tensor]:
    """The dataset's tensors at the generation resolution, from the cache when present."""
    seed = options["seed"]
    resolution = options["resolution"] or kind.resolution
    generate = _check_int(options, "generate_resolution", 1, optional=True) or resolution
    dataset_options = {key: options[key] for key in kind.defaults}
    if dataset_options.get("device") == "auto":
        # The random streams differ between devices, so the cache key names the device type.
        dataset_options["device"] = generation_device("auto").type

    def build() -> dict[str, torch.Tensor]:
        return kind.build(total, seed, resolution=generate, **dataset_options)

    cache_dir = _cache_setting(options["cache_dir"])
    if cache_dir is False:
        return build()
    params = {"n_samples": total, "seed": seed, "resolution": generate, **dataset_options}
    return cached(name, params, build, cache_dir=cache_dir)


def _generated_split(name: str, options: dict[str, Any], sizes: dict[str, int],
                     ranges: dict[str, range], split: str, normalize: bool):
    kind = dataset_kind(name)
    total = sum(sizes.values())
    tensors = _generated_tensors(name, kind, options, total)
    if kind.time_series:
        if "trajectories" not in tensors or len(tensors["trajectories"]) != total:
            raise ValueError(f"dataset '{name}' must provide 'trajectories' with {total} "
                             f"samples, got { {k: tuple(v.shape) for k, v in tensors.items()} }")
        history = _check_int(options, "history", 1)
        horizon = _check_int(options, "horizon", 1)
        x, y = time_windows(tensors["trajectories"], history, horizon)
    else:
        for key in ("x", "y"):
            if key not in tensors or len(tensors[key]) != total:
                raise ValueError(f"dataset '{name}' must provide '{key}' with {total} samples, "
                                 f"got { {k: tuple(v.shape) for k, v in tensors.items()} }")
        x, y = tensors["x"], tensors["y"]
    resolution = options["resolution"]
    x, y = (subsample(t, resolution, t.dim() - 2) for t in (x, y))

    def part(t: torch.Tensor, s: str) -> torch.Tensor:
        r = ranges[s]
        return t[r.start:r.stop].to(torch.float32, copy=True)

    normalizer = None
    x_split = part(x, split)
    if normalize:
        normalizer = DataNormalizer.fit(part(x, "train"), part(y, "train"))
        x_split = normalizer.encode_input(x_split)
    return TensorDataset(x_split, part(y, split)), normalizer


# ------------------------------------------------------------------------------- files


class _ServedSamples(Dataset):
    """Samples of a file dataset at the requested resolution, inputs encoded when asked."""

    def __init__(self, base: Dataset, resolution: int | None,
                 normalizer: DataNormalizer | None) -> None:
        self.base = base
        self.resolution = resolution
        self.normalizer = normalizer

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[index]
        x, y = (subsample(t, self.resolution, t.dim() - 1) for t in (x, y))
        if self.normalizer is not None:
            x = self.normalizer.encode_input(x.unsqueeze(0)).squeeze(0)
        return x, y


@functools.lru_cache(maxsize=8)
def _fit_file_normalizer(path: str, mtime: float, key: tuple, train: range,
                         resolution: int | None) -> DataNormalizer:
    """Statistics of a file's training split, read in batches (cached per file version)."""
    pairs = PairFile(path, *key)
    chunks = [range(i, min(i + _FIT_BATCH, train.stop)) for i in range(train.start, train.stop,
                                                                        _FIT_BATCH)]
    batches = [pairs.take(list(chunk)) for chunk in chunks]
    xs = (subsample(b["x"], resolution, b["x"].dim() - 2) for b in batches)
    ys = (subsample(b["y"], resolution, b["y"].dim() - 2) for b in batches)
    return DataNormalizer(UnitGaussian.fit(xs), UnitGaussian.fit(ys))


def _file_split(options: dict[str, Any], sizes: dict[str, int], ranges: dict[str, range],
                split: str, normalize: bool):
    if options["path"] is None:
        raise ValueError("dataset 'file' needs the data option 'path' (an .h5, .hdf5, .npz, "
                         ".npy or .pt file)")
    path = str(Path(options["path"]).expanduser())
    history = _check_int(options, "history", 1, optional=True)
    horizon = _check_int(options, "horizon", 1, optional=True)
    key = (options["x_key"], options["y_key"], history, horizon)
    pairs = PairFile(path, *key)
    total = sum(sizes.values())
    if len(pairs) < total:
        raise ValueError(f"{path} holds {len(pairs)} samples, but n_train + n_val + n_test = "
                         f"{total}")
    resolution = options["resolution"]
    normalizer = None
    if normalize:
        normalizer = _fit_file_normalizer(path, os.path.getmtime(path), key, ranges["train"],
                                          resolution)
    return _ServedSamples(Subset(pairs, ranges[split]), resolution, normalizer), normalizer
