"""Parallelism strategies: how DistributedTrainer replicates or shards a model across ranks.

``create_parallelism_strategy(config, world_size)`` reads the ``parallelism`` section of a
config file::

    parallelism:
      strategy: fsdp              # ddp | fsdp | hsdp | none
      param_dtype: bfloat16       # options of the strategy, below
      activation_checkpointing: true

=========  ==========================================================================
strategy   options (defaults)
=========  ==========================================================================
``ddp``    ``bucket_cap_mb`` (25), ``gradient_as_bucket_view`` (True),
           ``static_graph`` (False), ``find_unused_parameters`` (False),
           ``broadcast_buffers`` (True)
``fsdp``   ``reshard_after_forward`` (True), ``param_dtype`` / ``reduce_dtype`` (None:
           the parameters' own), ``activation_checkpointing`` (False),
           ``shard_modules`` (``['FNOBlock']``)
``hsdp``   the options of ``fsdp``, and ``shard_size`` (ranks per shard group; default
           ``LOCAL_WORLD_SIZE``, so parameters are sharded within a node and replicated
           across nodes)
``none``   (no option) the model is not wrapped; one process only
=========  ==========================================================================

Without ``strategy`` the default is ``ddp`` for more than one process and ``none`` for one.
The strategies themselves live in :mod:`nol_fast.distributed.ddp` and
:mod:`nol_fast.distributed.fsdp`.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch import nn

from nol_fast.checks import as_int

STRATEGIES = ("ddp", "fsdp", "hsdp", "none")


class ParallelismStrategy:
    """How a model is replicated or sharded across processes (base class).

    A strategy is made for a ``world_size`` before the model exists;
    :class:`~nol_fast.training.DistributedTrainer` calls :meth:`wrap` on its model once the
    process group is up, and the other methods on the wrapped model.
    """

    #: The name used in config files.
    name = "base"
    #: Whether checkpoints are directories of shards (``torch.distributed.checkpoint``) rather
    #: than one file that global rank 0 writes.
    sharded_checkpoints = False

    def __init__(self, world_size: int) -> None:
        self.world_size = as_int(world_size, "world_size", minimum=1)

    def options(self) -> dict[str, Any]:
        """The strategy's settings, for logs and checkpoints."""
        return {}

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """Place ``model`` on ``device`` and wrap or shard it for this strategy."""
        raise NotImplementedError

    def unwrap(self, model: nn.Module) -> nn.Module:
        """The user's module inside what :meth:`wrap` returned."""
        return model

    def gradient_sync(self, model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Context of a backward pass; ``sync=False`` accumulates gradients locally."""
        return contextlib.nullcontext()

    def lockstep_forward(self, model: nn.Module) -> bool:
        """Whether every forward pass is a collective, so all ranks must run as many."""
        return False

    def full_state_dict(self, model: nn.Module) -> dict[str, Any]:
        """The weights as the plain state dict of the user's module (on global rank 0 at
        least; sharding strategies return an empty dict elsewhere)."""
        return self.unwrap(model).state_dict()

    def load_full_state_dict(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Load what :meth:`full_state_dict` returned (read on global rank 0 at least)."""
        self.unwrap(model).load_state_dict(state)

    def portable_parameters(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The wrapped model's parameters under the user's module's parameter names."""
        return dict(self.unwrap(model).named_parameters())

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}(world_size={self.world_size}{', ' if settings else ''}" \
               f"{settings})"


class NoParallelism(ParallelismStrategy):
    """``'none'``: the model is only moved to the device; valid for one process."""

    name = "none"

    def __init__(self, world_size: int) -> None:
        super().__init__(world_size)
        if self.world_size != 1:
            raise ValueError(
                f"strategy 'none' does not synchronise gradients, so it needs world_size 1, "
                f"got {self.world_size}; choose one of: ddp, fsdp, hsdp"
            )

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        return model.to(device)


def create_parallelism_strategy(config: Any, world_size: int) -> ParallelismStrategy:
    """Build the strategy named in ``config`` (the ``parallelism`` section) for ``world_size``.

    Parameters
    ----------
    config
        A mapping, :class:`~nol_fast.config.Section` or object with the keys in the module
        docstring; ``None`` or empty for the default (``ddp``, or ``none`` for one process).
    world_size
        Total number of processes.

    Returns
    -------
    ParallelismStrategy

    Raises
    ------
    ValueError
        For an unknown strategy or option, or an option value out of range.

    Examples
    --------
    >>> create_parallelism_strategy({"strategy": "ddp", "bucket_cap_mb": 50}, world_size=2)
    DDPStrategy(world_size=2, bucket_cap_mb=50, gradient_as_bucket_view=True, static_graph=False, find_unused_parameters=False, broadcast_buffers=True)
    """  # noqa: E501
    from nol_fast.config import section_to_dict  # nol_fast.config imports the training package
    from nol_fast.distributed.ddp import DDPStrategy
    from nol_fast.distributed.fsdp import FSDPStrategy, HSDPStrategy

    world_size = as_int(world_size, "world_size", minimum=1)
    options = section_to_dict(config)
    name = options.pop("strategy", None) or ("ddp" if world_size > 1 else "none")
    if not isinstance(name, str) or name.lower() not in STRATEGIES:
        raise ValueError(f"unknown parallelism strategy {name!r}; choose one of: "
                         f"{', '.join(STRATEGIES)}")
    name = name.lower()
    classes: dict[str, type[ParallelismStrategy]] = {
        "ddp": DDPStrategy, "fsdp": FSDPStrategy, "hsdp": HSDPStrategy, "none": NoParallelism,
    }
    cls = classes[name]
    accepted = getattr(cls, "OPTIONS", {})
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        known = ", ".join(accepted) if accepted else "none"
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for parallelism "
                         f"strategy '{name}'; its options: {known}")
    if name == "hsdp" and options.get("shard_size") is None:
        options["shard_size"] = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    return cls(world_size, **options)


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is a bool, else a ValueError naming the option."""
    if not isinstance(value, bool):
        raise ValueError(f"parallelism option '{name}' must be true or false, got {value!r}")
    return value
