"""Sharded checkpoints of the fsdp and hsdp strategies, and their consolidation into one file.

A sharded checkpoint is a directory:

- the model's and the optimizer's shards, written by every rank with
  ``torch.distributed.checkpoint`` (DCP: ``.metadata`` and ``__<rank>_0.distcp`` files);
- ``trainer_state.pt``, written by global rank 0: everything else a checkpoint holds (scheduler,
  GradScaler, counters, history, callback states, RNG states, config, normalizer), marked
  ``format: nol_fast.sharded_checkpoint``.

Every rank writes into a temporary directory next to the target, which then replaces the target
(a crash mid-write leaves the previous checkpoint in place). DCP reshards on load, so a run
resumes on another number of ranks. :func:`consolidate` turns the directory into the one-file
checkpoint that ``Trainer.load_checkpoint`` reads on one process (``nol-fast checkpoint
consolidate``): the model under its own parameter names (complex weights complex again) and the
optimizer state in ``torch.optim`` layout.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nol_fast.distributed import collectives, complex_params
from nol_fast.serialization import atomic_save
from nol_fast.training.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    check_format_version,
    load_file,
)

#: Marks the ``trainer_state.pt`` of a sharded checkpoint.
SHARDED_FORMAT = "nol_fast.sharded_checkpoint"
TRAINER_STATE = "trainer_state.pt"


def is_sharded_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a sharded checkpoint directory."""
    return (Path(path) / TRAINER_STATE).is_file()


def save_sharded(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    trainer_state: dict[str, Any],
    group: Any,
) -> None:
    """Write a sharded checkpoint of ``model`` (and ``optimizer``) to the directory ``path``.

    A collective: every rank calls it. ``trainer_state`` is what global rank 0 writes to
    ``trainer_state.pt``; ``group`` is the gloo group that coordinates the write. An optimizer
    that has not stepped yet holds no state and is not saved.
    """
    from torch.distributed import checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    path = Path(path)
    rank = dist.get_rank()
    token = collectives.gather(uuid.uuid4().hex if rank == 0 else None, group)[0]
    staging = path.with_name(f".{path.name}.{token}.tmp")
    if optimizer is not None and optimizer.state:
        model_state, optimizer_state = get_state_dict(model, optimizer)
        shards = {"model": model_state, "optimizer": optimizer_state}
    else:
        shards = {"model": get_model_state_dict(model)}
    dcp.save(shards, checkpoint_id=str(staging), process_group=group)
    if rank == 0:
        state = {"format": SHARDED_FORMAT, "format_version": FORMAT_VERSION,
                 "complex_parameters": complex_params.stored_as_real(model), **trainer_state}
        atomic_save(state, staging / TRAINER_STATE)
        _replace(staging, path, token)
    dist.barrier(group=group)


def read_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    """The ``trainer_state.pt`` of a sharded checkpoint, checked for its format marker."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"sharded checkpoint not found: {path} is not a directory")
    state = load_file(path / TRAINER_STATE)
    if not isinstance(state, dict) or state.get("format") != SHARDED_FORMAT:
        raise CheckpointError(f"{path} is not a nol_fast sharded checkpoint")
    check_format_version(state, path)
    return state


def load_sharded(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    group: Any,
) -> bool:
    """Load the shards of a checkpoint into ``model`` (and ``optimizer``), resharding them for
    this run's ranks; returns whether optimizer state was loaded.

    A collective. The saved parameter names and shapes are checked against the model before
    anything is loaded, so a mismatch raises :class:`CheckpointError` and changes nothing.
    """
    from torch.distributed import checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    path = Path(path)
    try:
        saved = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    except Exception as err:  # noqa: BLE001 - any failure to read means "not loadable"
        raise CheckpointError(f"{path}: the shards' metadata cannot be read: {err}") from None
    model_state = get_model_state_dict(model)
    _check_model_fits(model_state, saved, path, model)
    with_optimizer = optimizer is not None and any(k.startswith("optimizer.") for k in saved)
    if with_optimizer:
        # Creates the optimizer's state (a step with zero gradients and lr), to be overwritten.
        model_state, optimizer_state = get_state_dict(model, optimizer)
        shards = {"model": model_state, "optimizer": optimizer_state}
    else:
        shards = {"model": model_state}
    dcp.load(shards, checkpoint_id=str(path), process_group=group)
    set_model_state_dict(model, shards["model"])
    if with_optimizer:
        set_optimizer_state_dict(model, optimizer, shards["optimizer"])
    return with_optimizer


def consolidate(path: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Turn the sharded checkpoint ``path`` into the one-file checkpoint ``out``.

    Runs on one process, without a process group; needs the memory of the whole model and
    optimizer state. ``out`` loads with ``Trainer.load_checkpoint`` (and, for the model alone,
    ``model.load_state_dict(torch.load(out)['model'])``).

    Returns
    -------
    The checkpoint written.

    Examples
    --------
    >>> consolidate("runs/darcy/checkpoints/last.pt", "last-full.pt")  # doctest: +SKIP
    """
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    trainer_state = read_trainer_state(path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as scratch:
        flat = Path(scratch) / "shards.pt"
        dcp_to_torch_save(str(path), str(flat))
        shards = torch.load(flat, map_location="cpu", weights_only=True)
    complex_names = trainer_state.pop("complex_parameters")
    optimizer = shards.get("optimizer")
    state = {
        **trainer_state,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": complex_params.to_portable(shards["model"], complex_names),
        "optimizer": None if optimizer is None else _torch_optim_layout(optimizer,
                                                                        complex_names),
    }
    atomic_save(state, out)
    return state


def _torch_optim_layout(state: dict[str, Any], complex_names: list[str]) -> dict[str, Any]:
    """An optimizer state dict keyed by parameter names (DCP's layout) in ``torch.optim``'s
    layout: parameters numbered in param-group order, complex state complex again."""
    portable = complex_params.portable_names(state["state"], complex_names)
    index: dict[str, int] = {}
    groups = []
    for group in state["param_groups"]:
        ids = [index.setdefault(name, len(index)) for name in group["params"]]
        groups.append({**group, "params": ids})
    per_param = {}
    for name, values in state["state"].items():
        is_complex = portable.get(name, name) != name
        per_param[index[name]] = (complex_params.complex_state_to_portable(values)
                                  if is_complex else dict(values))
    return {"state": per_param, "param_groups": groups}


def _check_model_fits(
    model_state: dict[str, Any], saved: dict[str, Any], path: Path, model: nn.Module
) -> None:
    missing = [k for k in model_state if f"model.{k}" not in saved]
    wrong = [
        f"{k}: checkpoint {tuple(saved[f'model.{k}'].size)} vs model {tuple(v.shape)}"
        for k, v in model_state.items()
        if f"model.{k}" in saved and hasattr(saved[f"model.{k}"], "size")
        and tuple(saved[f"model.{k}"].size) != tuple(v.shape)
    ]
    if missing or wrong:
        parts = ([f"missing keys {missing[:5]}"] if missing else []) + (
            [f"shape mismatches {wrong[:5]}"] if wrong else [])
        raise CheckpointError(
            f"{path} does not fit the model ({type(model).__name__}): {'; '.join(parts)}"
        )


def _replace(staging: Path, path: Path, token: str) -> None:
    """Put the directory ``staging`` at ``path``, removing what was there."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.{token}.old")
        os.replace(path, old)
    os.replace(staging, path)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()
