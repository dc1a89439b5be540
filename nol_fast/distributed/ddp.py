"""``'ddp'``: every rank holds the whole model; gradients are averaged by all-reduce.

torch's ``DistributedDataParallel`` all-reduces complex gradients as pairs of reals, so the
FNO's complex spectral weights need no special handling here. ``no_sync`` keeps the gradients of
all but the last micro-batch of an accumulation group local, so a group costs one all-reduce.
Checkpoints are one file of the unwrapped module's state, written by global rank 0.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nol_fast.checks import as_real
from nol_fast.distributed.strategies import ParallelismStrategy, check_bool

_DDP_ARGUMENTS = inspect.signature(DistributedDataParallel.__init__).parameters


class DDPStrategy(ParallelismStrategy):
    """Data parallelism with ``torch.nn.parallel.DistributedDataParallel``.

    Parameters
    ----------
    world_size
        Number of processes.
    bucket_cap_mb
        Size of the gradient buckets all-reduced together, in MiB.
    gradient_as_bucket_view
        Gradients are views into the all-reduce buckets, which saves a copy and the memory of
        one set of gradients.
    static_graph
        The set of parameters used is the same at every step (lets DDP skip its per-step
        search for unused parameters and reorder buckets once).
    find_unused_parameters
        Look for parameters without gradients at every step (needed only for models that skip
        parameters in some forward passes).
    broadcast_buffers
        Broadcast rank 0's buffers before each forward pass.

    Examples
    --------
    >>> DDPStrategy(2, bucket_cap_mb=50).options()["bucket_cap_mb"]
    50
    """

    name = "ddp"
    OPTIONS = {
        "bucket_cap_mb": 25,
        "gradient_as_bucket_view": True,
        "static_graph": False,
        "find_unused_parameters": False,
        "broadcast_buffers": True,
    }

    def __init__(
        self,
        world_size: int,
        bucket_cap_mb: float = 25,
        gradient_as_bucket_view: bool = True,
        static_graph: bool = False,
        find_unused_parameters: bool = False,
        broadcast_buffers: bool = True,
    ) -> None:
        super().__init__(world_size)
        self.bucket_cap_mb = bucket_cap_mb
        as_real(bucket_cap_mb, "parallelism option 'bucket_cap_mb'", minimum=0)
        self.gradient_as_bucket_view = check_bool(gradient_as_bucket_view,
                                                  "gradient_as_bucket_view")
        self.static_graph = check_bool(static_graph, "static_graph")
        self.find_unused_parameters = check_bool(find_unused_parameters, "find_unused_parameters")
        self.broadcast_buffers = check_bool(broadcast_buffers, "broadcast_buffers")

    def options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.OPTIONS}

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        model = model.to(device)
        # torch 2.13 renamed broadcast_buffers to forward_sync_buffers (both sync at start-up).
        buffers = ("forward_sync_buffers" if "forward_sync_buffers" in _DDP_ARGUMENTS
                   else "broadcast_buffers")
        return DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            bucket_cap_mb=self.bucket_cap_mb,
            gradient_as_bucket_view=self.gradient_as_bucket_view,
            static_graph=self.static_graph,
            find_unused_parameters=self.find_unused_parameters,
            **{buffers: self.broadcast_buffers},
        )

    def unwrap(self, model: nn.Module) -> nn.Module:
        return model.module if isinstance(model, DistributedDataParallel) else model

    def gradient_sync(self, model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        # torch's static-graph reducer fails an internal assertion when a micro-batch's forward
        # and backward run under no_sync; there every micro-batch is all-reduced (the mean of
        # the sums equals the sum of the means, so only the traffic differs).
        return contextlib.nullcontext() if sync or self.static_graph else model.no_sync()

    def lockstep_forward(self, model: nn.Module) -> bool:
        # DDP broadcasts buffers in the forward pass; a model without buffers has none to send.
        return self.broadcast_buffers and any(True for _ in self.unwrap(model).buffers())
