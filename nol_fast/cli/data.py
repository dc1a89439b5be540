"""``nol-fast data``: generate a dataset into a file, or describe a data file.

``nol-fast data generate darcy --n 1000 --resolution 64 --out darcy64.h5`` runs a registered
generator (:mod:`nol_fast.data.datasets`) and writes its samples with
:func:`~nol_fast.data.files.save_pairs` (pairs) or :func:`~nol_fast.data.files.save_series`
(trajectories), with the generator's name and parameters as metadata; the file then trains
with ``dataset: file``. ``nol-fast data info FILE`` prints what a file holds.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import yaml

logger = logging.getLogger("nol_fast.cli")


def add_parser(subparsers: Any) -> None:
    """Register ``data generate`` and ``data info`` on the CLI's subparsers."""
    from nol_fast.data import available_datasets

    generated = [name for name in available_datasets() if name != "file"]
    parser = subparsers.add_parser("data", help="generate PDE datasets and inspect data files")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    generate = actions.add_parser(
        "generate", help="generate a dataset into a file",
        description="Generate samples with a built-in solver and write them to FILE (.h5, .pt "
        "or .npz for input/output pairs; .h5 for time series). Train on the file with "
        "'dataset: file' and 'path: FILE'.",
    )
    generate.add_argument("dataset", choices=generated, help="generator to run")
    generate.add_argument("--n", type=int, required=True, help="number of samples")
    generate.add_argument("--resolution", type=int, help="grid points per dimension "
                          "(default: the generator's)")
    generate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    generate.add_argument("--out", required=True, help="output file")
    generate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="a generator option, e.g. --set viscosity=1e-4 (repeatable)")
    generate.set_defaults(handler=run_generate)

    info = actions.add_parser("info", help="describe a data file")
    info.add_argument("file", help=".h5/.hdf5, .npz, .npy or .pt file")
    info.set_defaults(handler=run_info)


def _options(kind_defaults: dict[str, Any], pairs: list[str], name: str) -> dict[str, Any]:
    """The generator's options with ``KEY=VALUE`` overrides (values parsed as YAML)."""
    options = dict(kind_defaults)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in options:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(options) or '(none)'} for '{name}'")
        options[key] = yaml.safe_load(value)
    return options


def run_generate(args: argparse.Namespace) -> int:
    from nol_fast.data.files import save_pairs, save_series
    from nol_fast.data.registry import dataset_kind

    if args.n < 1:
        raise ValueError(f"--n must be a positive integer, got {args.n}")
    kind = dataset_kind(args.dataset)
    options = _options(kind.defaults, args.set, args.dataset)
    resolution = args.resolution or kind.resolution
    started = time.perf_counter()
    tensors = kind.build(args.n, args.seed, resolution=resolution, **options)
    elapsed = time.perf_counter() - started
    meta = {"name": args.dataset,
            "params": {"n_samples": args.n, "seed": args.seed, "resolution": resolution,
                       **options}}
    if kind.time_series:
        path = save_series(args.out, tensors["trajectories"], meta)
        shapes = f"trajectories {tuple(tensors['trajectories'].shape)}"
    else:
        path = save_pairs(args.out, tensors["x"], tensors["y"], meta)
        shapes = f"x {tuple(tensors['x'].shape)}, y {tuple(tensors['y'].shape)}"
    print(f"generated {args.n} {args.dataset} samples in {elapsed:.1f} s: {shapes} -> {path}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from nol_fast.data.files import describe_file

    print(describe_file(args.file))
    return 0
