"""The registry of dataset kinds that :func:`~nol_fast.data.create_data_loader` can build.

A kind is a builder ``build(n_samples, seed, **options)`` registered with the options it
accepts and their defaults. It returns either input/output pairs ``{'x': Tensor, 'y':
Tensor}`` of shape ``(n_samples, channels, *grid)``, or, for a kind registered with
``time_series=True``, ``{'trajectories': Tensor}`` of shape ``(n_samples, n_times, *grid)``,
which the loader cuts into ``history``/``horizon`` windows. The generic options (split sizes,
batch size, seed, resolution, normalisation, cache) are handled by the loader for every kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

Builder = Callable[..., dict[str, torch.Tensor]]

#: Options of every kind, handled by the loader; a kind's own options may not reuse them.
RESERVED_OPTIONS = frozenset({
    "dataset", "n_train", "n_val", "n_test", "batch_size", "num_workers", "seed", "shuffle",
    "cache_dir", "drop_last", "normalize", "resolution", "generate_resolution", "history",
    "horizon", "path", "x_key", "y_key",
})  # fmt: skip


@dataclass(frozen=True)
class DatasetKind:
    """A registered dataset: its builder, its own options with their defaults, and whether it
    yields trajectories (cut into history/horizon windows) rather than pairs."""

    build: Builder
    defaults: dict[str, Any]
    resolution: int
    time_series: bool = False


_DATASETS: dict[str, DatasetKind] = {}


def register_dataset(
    name: str, *, resolution: int = 32, time_series: bool = False, **defaults: Any
) -> Callable[[Builder], Builder]:
    """Decorator registering a dataset builder under ``name``.

    Parameters
    ----------
    name : str
        Value of the ``dataset`` option that selects the builder.
    resolution : int
        Default grid points per dimension. The builder receives ``resolution`` (the grid it
        generates on: the ``generate_resolution`` option, else ``resolution``); the loader
        subsamples to the ``resolution`` option.
    time_series : bool
        The builder returns ``{'trajectories': (n, n_times, *grid)}`` instead of pairs.
    **defaults
        The builder's own options and their defaults; the loader accepts these keys on top of
        the generic ones and passes them on.

    Examples
    --------
    >>> @register_dataset("ramp", resolution=16)
    ... def build_ramp(n_samples, seed, resolution):
    ...     x = torch.linspace(0, 1, resolution).repeat(n_samples, 1, 1)
    ...     return {"x": x, "y": 2 * x}
    """
    clash = sorted(set(defaults) & RESERVED_OPTIONS)
    if clash:
        raise ValueError(f"dataset '{name}' options {clash} clash with the common options")

    def decorator(build: Builder) -> Builder:
        if name in _DATASETS and _DATASETS[name].build is not build:
            raise ValueError(f"dataset name '{name}' is already registered to "
                             f"{_DATASETS[name].build.__name__}")
        _DATASETS[name] = DatasetKind(build, dict(defaults), resolution, time_series)
        return build

    return decorator


def available_datasets() -> list[str]:
    """Names accepted by the ``dataset`` option, sorted (``'file'`` reads a user's file)."""
    return sorted([*_DATASETS, "file"])


def dataset_kind(name: str) -> DatasetKind:
    """The registered kind ``name``; ``ValueError`` listing the names for an unknown one."""
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: "
                         f"{', '.join(available_datasets())}")
    return _DATASETS[name]
