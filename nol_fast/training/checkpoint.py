"""Crash-safe checkpoint files and the RNG state that makes a resumed run bit-identical.

Writes go to a temporary file in the target directory, are flushed and fsync'ed, and then
``os.replace`` puts them in place, so a crash mid-write leaves the previous file intact. Reads
use ``torch.load(weights_only=True)``: a checkpoint holds only tensors and plain data, and a file
that is truncated, foreign or not ours is reported as a :class:`CheckpointError`.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from nol_fast.serialization import atomic_save

__all__ = [
    "CheckpointError", "atomic_save", "capture_rng_state", "check_optimizer_fits",
    "check_state_dict_fits", "load_checkpoint_file", "load_file", "loader_generators",
    "restore_rng_state",
]

#: Marks files written by ``Trainer.save_checkpoint``; bumped when the layout changes.
FORMAT = "nol_fast.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, foreign or does not fit the model."""


def load_file(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``, turning every failure into a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain data, so it is not a nol_fast "
            f"checkpoint and was not loaded: {str(err).splitlines()[0]}"
        ) from None
    except Exception as err:  # noqa: BLE001 - any failure to parse means "not a checkpoint"
        raise CheckpointError(
            f"{path} is truncated or not a checkpoint file: {str(err).splitlines()[0]}"
        ) from None


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a full training checkpoint and check its format marker."""
    state = load_file(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        hint = ""
        if isinstance(state, dict) and state and all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            hint = " (it looks like a plain state_dict: use model.load_state_dict)"
        raise CheckpointError(f"{path} is not a nol_fast training checkpoint{hint}")
    check_format_version(state, path)
    return state


def check_format_version(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse a checkpoint written in a newer format than this version of nol_fast reads
    (files without a version are of the first format)."""
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {state['format_version']}, newer than this version "
            f"of nol_fast reads ({FORMAT_VERSION}); upgrade nol_fast"
        )


def check_state_dict_fits(module: torch.nn.Module, state: dict[str, Any], source: str) -> None:
    """Raise before loading if ``state`` does not match ``module``'s keys and shapes.

    ``Module.load_state_dict`` copies every matching tensor before it reports a mismatch; this
    check runs first so a bad checkpoint leaves the model untouched.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}")
        if wrong:
            parts.append(f"shape mismatches {wrong[:5]}")
        raise CheckpointError(
            f"{source} does not fit the model ({type(module).__name__}): {'; '.join(parts)}"
        )


def capture_rng_state(generators: list[torch.Generator]) -> dict[str, Any]:
    """RNG states of python, numpy, torch (CPU and CUDA) and the given generators.

    Kept as tensors and plain data so the checkpoint loads with ``weights_only=True``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "generators": [g.get_state() for g in generators],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], generators: list[torch.Generator]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for generator, gen_state in zip(generators, state["generators"], strict=True):
        generator.set_state(gen_state)


def check_optimizer_fits(optimizer: torch.optim.Optimizer, state: dict, source: str) -> None:
    """Raise before loading if the saved optimizer's parameter groups differ in size."""
    saved = [len(g["params"]) for g in state.get("param_groups", [])]
    current = [len(g["params"]) for g in optimizer.param_groups]
    if saved != current:
        raise CheckpointError(
            f"{source} has optimizer parameter groups of sizes {saved}, but the optimizer has "
            f"{current}; build the optimizer as in the saved run or use load_optimizer=False"
        )


def loader_generators(*loaders: Any) -> list[torch.Generator]:
    """The random generators of data loaders, whose states make resumed shuffles identical.

    Looks at each ``DataLoader``'s own generator and its (batch) sampler's; each generator is
    listed once, in a fixed order.
    """
    found: list[torch.Generator] = []
    for loader in loaders:
        if not isinstance(loader, DataLoader):
            continue
        sampler = getattr(loader, "sampler", None)
        batch_sampler = getattr(loader, "batch_sampler", None)
        candidates = [
            loader.generator,
            getattr(sampler, "generator", None),
            getattr(getattr(batch_sampler, "sampler", None), "generator", None),
        ]
        for generator in candidates:
            if generator is not None and all(generator is not g for g in found):
                found.append(generator)
    return found
