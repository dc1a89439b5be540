"""``'fsdp'`` and ``'hsdp'``: parameters, gradients and optimizer state sharded with FSDP2.

Each FNO block is one FSDP2 unit (``fully_shard``): its parameters are all-gathered just before
the block runs and freed after, and its gradients are reduce-scattered as soon as its backward
is done; the root unit holds the lifting and projection. The FNO calls its blocks'
``forward_channels_last`` (the fused CPU path) rather than ``forward``; that method is
registered with FSDP2 too, so both paths gather and free parameters.

Complex spectral weights are held as real views (:mod:`nol_fast.distributed.complex_params`),
since FSDP2 moves one dtype per unit. A mixed-precision policy (``param_dtype``,
``reduce_dtype``) casts the gathered parameters and the reduced gradients; optional activation
checkpointing recomputes each block's activations in the backward pass instead of keeping them.

``'hsdp'`` shards over a 2-D device mesh ``(replicate, shard)``: parameters are sharded within
groups of ``shard_size`` ranks (a node, by default) and replicated across groups, whose
gradients are then all-reduced.

Checkpoints are sharded: every rank writes its shards with ``torch.distributed.checkpoint``
(:mod:`nol_fast.distributed.checkpoints`).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from nol_fast.checks import as_int
from nol_fast.distributed import complex_params
from nol_fast.distributed.strategies import ParallelismStrategy, check_bool

#: Names accepted for ``param_dtype`` and ``reduce_dtype``.
DTYPES = {
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float32": torch.float32, "fp32": torch.float32,
}
#: Methods that models call on their blocks in place of ``forward`` (the FNO's fused CPU path).
FORWARD_METHODS = ("forward", "forward_channels_last")


def _fsdp_api() -> Any:
    """torch's FSDP2 module (``torch.distributed.fsdp`` from torch 2.6 on)."""
    from torch.distributed import fsdp

    if not hasattr(fsdp, "fully_shard"):
        raise RuntimeError(
            f"the fsdp and hsdp strategies need FSDP2 (torch.distributed.fsdp.fully_shard, "
            f"torch >= 2.6); this is torch {torch.__version__}"
        )
    return fsdp


class FSDPStrategy(ParallelismStrategy):
    """Fully sharded data parallelism with FSDP2 (``torch.distributed.fsdp.fully_shard``).

    Parameters
    ----------
    world_size
        Number of processes.
    reshard_after_forward
        Free each block's gathered parameters after its forward pass (and gather them again
        for the backward); False keeps them until the backward, trading memory for one
        all-gather per block and step.
    param_dtype, reduce_dtype
        Mixed-precision policy: dtype of the gathered parameters used in the forward and
        backward passes, and of the gradient reduction (``'bfloat16'``, ``'float16'``,
        ``'float32'``); None keeps the parameters' dtype.
    activation_checkpointing
        Recompute each sharded block's activations in the backward pass.
    shard_modules
        Class names of the submodules that become FSDP2 units of their own (the FNO's
        ``FNOBlock`` by default); everything else belongs to the root unit.

    Examples
    --------
    >>> FSDPStrategy(4, param_dtype="bf16").options()["param_dtype"]
    'bfloat16'
    """

    name = "fsdp"
    sharded_checkpoints = True
    OPTIONS = {
        "reshard_after_forward": True,
        "param_dtype": None,
        "reduce_dtype": None,
        "activation_checkpointing": False,
        "shard_modules": ["FNOBlock"],
    }

    def __init__(
        self,
        world_size: int,
        reshard_after_forward: bool = True,
        param_dtype: str | torch.dtype | None = None,
        reduce_dtype: str | torch.dtype | None = None,
        activation_checkpointing: bool = False,
        shard_modules: Sequence[str] = ("FNOBlock",),
    ) -> None:
        super().__init__(world_size)
        self.reshard_after_forward = check_bool(reshard_after_forward, "reshard_after_forward")
        self.param_dtype = _dtype(param_dtype, "param_dtype")
        self.reduce_dtype = _dtype(reduce_dtype, "reduce_dtype")
        self.activation_checkpointing = check_bool(activation_checkpointing,
                                                   "activation_checkpointing")
        if isinstance(shard_modules, str) or not all(isinstance(n, str) for n in shard_modules):
            raise ValueError(f"parallelism option 'shard_modules' must be a list of module class "
                             f"names, got {shard_modules!r}")
        self.shard_modules = list(shard_modules)

    def options(self) -> dict[str, Any]:
        options = {name: getattr(self, name) for name in self.OPTIONS}
        for name in ("param_dtype", "reduce_dtype"):
            if options[name] is not None:
                options[name] = str(options[name]).removeprefix("torch.")
        return options

    def mesh_shape(self) -> tuple[int, ...]:
        """Shape of the device mesh: ``(world_size,)`` for FSDP."""
        return (self.world_size,)

    def mesh_dim_names(self) -> tuple[str, ...]:
        return ("shard",)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh

        fsdp = _fsdp_api()
        model = model.to(device)
        complex_params.store_as_real(model)
        units = [m for name, m in model.named_modules()
                 if name and type(m).__name__ in self.shard_modules]
        if self.activation_checkpointing:
            for unit in units:
                _checkpoint_forwards(unit)
        mesh = init_device_mesh(device.type, self.mesh_shape(),
                                mesh_dim_names=self.mesh_dim_names())
        policy = fsdp.MixedPrecisionPolicy(param_dtype=self.param_dtype,
                                           reduce_dtype=self.reduce_dtype)
        for unit in units:
            fsdp.fully_shard(unit, mesh=mesh, mp_policy=policy,
                             reshard_after_forward=self.reshard_after_forward)
            for method in FORWARD_METHODS[1:]:
                if hasattr(unit, method):
                    fsdp.register_fsdp_forward_method(unit, method)
        # The root's parameters (lifting, projection) are needed again at once by the backward
        # pass, so they are not freed after the forward pass.
        fsdp.fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=False)
        # FSDP2 warns that a unit returned a view, in case the caller changes it in place; the
        # Trainer's loop never does.
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view",
                                module=r"torch\.distributed\.fsdp")
        return model

    def gradient_sync(self, model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        return _requires_gradient_sync(model, sync)

    def lockstep_forward(self, model: nn.Module) -> bool:
        return True  # every unit all-gathers its parameters in every forward pass

    def full_state_dict(self, model: nn.Module) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        # Gathered to CPU tensors on global rank 0; the other ranks get an empty dict.
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(model, options=options)
        return complex_params.to_portable(state, complex_params.stored_as_real(model))

    def load_full_state_dict(self, model: nn.Module, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        # Global rank 0's copy is broadcast; the other ranks may pass an empty dict.
        state = complex_params.from_portable(state, complex_params.stored_as_real(model))
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_model_state_dict(model, state, options=options)

    def portable_parameters(self, model: nn.Module) -> dict[str, nn.Parameter]:
        named = dict(model.named_parameters())
        portable = complex_params.portable_names(named, complex_params.stored_as_real(model))
        return {portable[name]: param for name, param in named.items()}


class HSDPStrategy(FSDPStrategy):
    """Hybrid sharding: FSDP2 over a 2-D mesh ``(world_size // shard_size, shard_size)``.

    Parameters are those of :class:`FSDPStrategy`, and ``shard_size``, the number of ranks
    that share one copy of the model (it must divide ``world_size``).

    Examples
    --------
    >>> HSDPStrategy(8, shard_size=4).mesh_shape()
    (2, 4)
    """

    name = "hsdp"
    OPTIONS = {**FSDPStrategy.OPTIONS, "shard_size": None}

    def __init__(self, world_size: int, shard_size: int | None = None, **options: Any) -> None:
        super().__init__(world_size, **options)
        self.shard_size = as_int(self.world_size if shard_size is None else shard_size,
                                 "parallelism option 'shard_size'", minimum=1)
        if self.world_size % self.shard_size:
            raise ValueError(f"parallelism option 'shard_size' must divide world_size "
                             f"{self.world_size}, got {self.shard_size}")

    def mesh_shape(self) -> tuple[int, ...]:
        return (self.world_size // self.shard_size, self.shard_size)

    def mesh_dim_names(self) -> tuple[str, ...]:
        return ("replicate", "shard")


@contextlib.contextmanager
def _requires_gradient_sync(model: nn.Module, sync: bool) -> Iterator[None]:
    model.set_requires_gradient_sync(sync)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _checkpoint_forwards(module: nn.Module) -> None:
    """Make the module's forward methods recompute their activations in the backward pass."""
    for name in FORWARD_METHODS:
        method = getattr(module, name, None)
        if method is None:
            continue

        @functools.wraps(method)
        def recomputed(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            return checkpoint(_method, *args, use_reentrant=False, **kwargs)

        setattr(module, name, recomputed)


def _dtype(value: str | torch.dtype | None, name: str) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and value.lower() in DTYPES:
        return DTYPES[value.lower()]
    raise ValueError(f"parallelism option '{name}' must be one of: {', '.join(DTYPES)} or "
                     f"null, got {value!r}")
