"""create_data_loader: the ``data`` section of a config file turned into a DataLoader.

One function builds the loaders of every dataset kind. It checks the options, generates (or
reads from the cache) ``n_train + n_val + n_test`` samples once from ``seed``, cuts them into
three disjoint contiguous splits and wraps the requested split in a DataLoader.

Dataset kinds plug in through :func:`register_dataset`: a builder
``build(n_samples, seed, **options) -> {'x': Tensor, 'y': Tensor}`` registered with the
options it accepts and their defaults. The generic options (split sizes, batch size, seed,
cache...) are handled here for every kind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from nol_fast.config import section_to_dict
from nol_fast.data.cache import cached
from nol_fast.data.heat import generate_heat

SPLITS = ("train", "val", "test")

#: Options every dataset kind accepts, with their defaults.
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
}

Builder = Callable[..., dict[str, torch.Tensor]]


@dataclass(frozen=True)
class DatasetKind:
    """A registered dataset: its builder and its own options with their defaults."""

    build: Builder
    defaults: dict[str, Any]


_DATASETS: dict[str, DatasetKind] = {}


def register_dataset(name: str, **defaults: Any) -> Callable[[Builder], Builder]:
    """Decorator registering a dataset builder under ``name``.

    Parameters
    ----------
    name : str
        Value of the ``dataset`` option that selects the builder.
    **defaults
        The builder's own options and their defaults; ``create_data_loader`` accepts these
        keys on top of :data:`COMMON_DEFAULTS` and passes them to the builder.

    Examples
    --------
    >>> @register_dataset("ramp", resolution=16)
    ... def build_ramp(n_samples, seed, resolution):
    ...     x = torch.linspace(0, 1, resolution).repeat(n_samples, 1, 1)
    ...     return {"x": x, "y": 2 * x}
    """
    clash = sorted(set(defaults) & set(COMMON_DEFAULTS))
    if clash:
        raise ValueError(f"dataset '{name}' options {clash} clash with the common options")

    def decorator(build: Builder) -> Builder:
        if name in _DATASETS and _DATASETS[name].build is not build:
            raise ValueError(f"dataset name '{name}' is already registered to "
                             f"{_DATASETS[name].build.__name__}")
        _DATASETS[name] = DatasetKind(build=build, defaults=dict(defaults))
        return build

    return decorator


def available_datasets() -> list[str]:
    """Names accepted by the ``dataset`` option, sorted."""
    return sorted(_DATASETS)


@register_dataset("heat", resolution=32, n_dims=2, diffusivity=0.01, time=0.5)
def _build_heat(n_samples: int, seed: int, resolution: int, n_dims: int, diffusivity: float,
                time: float) -> dict[str, torch.Tensor]:
    """Heat equation pairs, generated on the CPU so the data do not depend on the machine."""
    x, y = generate_heat(n_samples, resolution=resolution, n_dims=n_dims,
                         diffusivity=diffusivity, time=time, seed=seed)
    return {"x": x, "y": y}


def _check_int(options: dict[str, Any], key: str, minimum: int) -> int:
    value = options[key]
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


def create_data_loader(data_config: Any, split: str) -> DataLoader:
    """Build the DataLoader of one split of a dataset.

    Parameters
    ----------
    data_config : mapping or object with ``__dict__``
        The ``data`` section of a config file. Options and defaults:

        ``dataset`` ('heat'), ``n_train`` (1000), ``n_val`` (200), ``n_test`` (200),
        ``batch_size`` (32), ``num_workers`` (0), ``seed`` (0), ``shuffle`` (True; train
        split only), ``cache_dir`` (None: ``$NOL_FAST_CACHE_DIR`` or ``~/.cache/nol_fast``;
        False or 'none': no cache), ``drop_last`` (False), and the dataset's own options;
        for 'heat': ``resolution`` (32), ``n_dims`` (2), ``diffusivity`` (0.01),
        ``time`` (0.5).
    split : {'train', 'val', 'test'}
        Samples ``[0, n_train)``, ``[n_train, n_train + n_val)`` or the last ``n_test`` of
        the ``n_train + n_val + n_test`` generated from ``seed``.

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
        For an unknown dataset, option or split, a bad option value or an empty split.

    Examples
    --------
    >>> loader = create_data_loader({"dataset": "heat", "n_train": 64, "resolution": 16,
    ...                              "cache_dir": False}, "train")
    >>> x, y = next(iter(loader))
    >>> x.shape
    torch.Size([32, 1, 16, 16])
    """
    # Imported here: nol_fast.config loads the training package, which may import data.
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    given = section_to_dict(data_config)
    name = given.get("dataset", COMMON_DEFAULTS["dataset"])
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: "
                         f"{', '.join(available_datasets())}")
    kind = _DATASETS[name]
    known = {**COMMON_DEFAULTS, **kind.defaults}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"unknown data option(s) {', '.join(map(repr, unknown))} for dataset "
                         f"'{name}'; known options: {', '.join(known)}")
    options = {**known, **given}
    sizes = {s: _check_int(options, f"n_{s}", 0) for s in SPLITS}
    batch_size = _check_int(options, "batch_size", 1)
    num_workers = _check_int(options, "num_workers", 0)
    seed = _check_int(options, "seed", 0)
    shuffle, drop_last = (_check_bool(options, key) for key in ("shuffle", "drop_last"))
    if sizes[split] == 0:
        raise ValueError(f"split '{split}' is empty: n_{split} is 0")
    cache_dir = _cache_setting(options["cache_dir"])

    total = sum(sizes.values())
    dataset_options = {key: options[key] for key in kind.defaults}

    def build() -> dict[str, torch.Tensor]:
        return kind.build(total, seed, **dataset_options)

    if cache_dir is False:
        tensors = build()
    else:
        params = {"n_samples": total, "seed": seed, **dataset_options}
        tensors = cached(name, params, build, cache_dir=cache_dir)

    for key in ("x", "y"):
        if key not in tensors or len(tensors[key]) != total:
            raise ValueError(f"dataset '{name}' must provide '{key}' with {total} samples, got "
                             f"{ {k: tuple(v.shape) for k, v in tensors.items()} }")
    start = {"train": 0, "val": sizes["train"], "test": sizes["train"] + sizes["val"]}[split]
    stop = start + sizes[split]
    x = tensors["x"][start:stop].to(torch.float32, copy=True)
    y = tensors["y"][start:stop].to(torch.float32, copy=True)
    # x, y: (n_split, channels, *grid)
    return DataLoader(
        TensorDataset(x, y),
        batch_size=batch_size,
        shuffle=split == "train" and shuffle,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
    )
