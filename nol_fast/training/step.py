"""The device work of one training step, with no host read and no non-finite update.

:class:`TrainStep` does what the training loop asks of the device:

- :meth:`TrainStep.micro_batch`: forward and loss (through ``torch.compile`` when asked),
  the epoch's sums (:class:`~nol_fast.training.totals.EpochTotals`), and the backward of the
  loss weighted by ``1 / group size`` (and scaled for fp16);
- :meth:`TrainStep.optimizer_step`: at the end of an accumulation group, unscale (fp16), clip,
  and step the optimizer such that a group with a non-finite loss or gradient changes nothing.

No step reads a value back to the host, so the step never waits for the device, and it can
be captured whole in a CUDA graph (:mod:`nol_fast.training.graphs`). A non-finite value
therefore cannot be seen when it happens; instead the optimizer step is made a no-op on the
device:

- optimizers that take a ``found_inf`` flag (nol_fast's fused optimizers, torch's
  ``fused=True`` ones: ``_step_supports_amp_scaling``) get the group's verdict as
  ``found_inf`` and skip the update themselves, step counters included;
- other optimizers step, and their parameters and state are then restored where the verdict
  says so (:func:`masked_step`).

The verdict is recorded in the epoch's totals, which the loop reads every ``log_frequency``
batches: that read raises :class:`~nol_fast.training.NonFiniteLossError`, or with
``skip_nonfinite`` counts the skipped batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from nol_fast.training.totals import EpochTotals

#: ``forward_loss(x, y) -> (scalar float32 loss, detached loss components)``
TrainLoss = Callable[[Tensor, Tensor], tuple[Tensor, dict[str, Tensor]]]


def takes_found_inf(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` skips its update where a ``found_inf`` attribute is set.

    That is the contract of ``torch.amp.GradScaler`` with optimizers that set
    ``_step_supports_amp_scaling``: nol_fast's fused optimizers and torch's ``fused=True``
    Adam, AdamW, SGD and Adagrad.
    """
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


def gradient_probe(params: list[Tensor], clip: float | None) -> Tensor:
    """A value of the gradients of ``params`` that is finite only if every gradient is.

    With ``clip`` the gradients are clipped to that global 2-norm (``clip_grad_norm_``) and the
    norm it computed is returned. Otherwise the sum of ``|sum(grad)|`` over the gradients: IEEE
    arithmetic carries any NaN or infinity through a sum, and finite gradients would have to
    pass 3e38 to overflow it. That is one cheap pass; the infinity norm's reduction took ten
    times longer on an FNO's complex weights (4 ms a step on the CPU). Over sharded gradients
    (FSDP's DTensors) the value is combined over the shards, so every process gets the same
    verdict.
    """
    if clip:
        probe = torch.nn.utils.clip_grad_norm_(params, clip)
    elif not params:
        return torch.zeros(())
    else:
        probe = torch.stack([p.grad.sum().abs() for p in params]).sum()
    return probe.full_tensor() if hasattr(probe, "full_tensor") else probe


@contextlib.contextmanager
def found_inf_flag(optimizer: torch.optim.Optimizer, skip: Tensor,
                   grad_scale: Tensor | None = None) -> Iterator[None]:
    """Hand ``skip`` to the next ``optimizer.step()`` as GradScaler does: ``found_inf``.

    ``grad_scale`` is the loss scale the gradients still carry, which the optimizer divides
    out in its own kernel; ``None`` when they are unscaled already.
    """
    optimizer.grad_scale = grad_scale  # type: ignore[attr-defined]
    optimizer.found_inf = skip.to(torch.float32)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del optimizer.grad_scale, optimizer.found_inf  # type: ignore[attr-defined]


def masked_step(optimizer: torch.optim.Optimizer, skip: Tensor) -> None:
    """``optimizer.step()``, undone on the device where ``skip`` (0-dim bool) is set.

    The parameters and the optimizer state tensors on ``skip``'s device are copied before the
    step and restored after it with ``torch.where``, so there is no host read. State that the
    step creates (the first step of torch's optimizers) is zeroed instead, which is the fresh
    state of torch's Adam, AdamW and RMSprop. State kept on the host (step counters that
    torch keeps on the CPU for CUDA parameters, Python numbers) advances regardless.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]
              if p.grad is not None]

    def device_state() -> Iterator[tuple[tuple[int, str], Tensor]]:
        for i, param in enumerate(params):
            yield (i, "param"), param
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, Tensor) and value.device == skip.device:
                    yield (i, key), value

    with torch.no_grad():
        saved = {key: tensor.clone() for key, tensor in device_state()}
        optimizer.step()
        for key, tensor in device_state():
            before = saved.get(key)
            if before is None:
                tensor.masked_fill_(skip, 0)
            else:
                tensor.copy_(torch.where(skip, before, tensor))


class TrainStep:
    """One micro-batch and one optimizer step on the device, with no host read.

    Parameters
    ----------
    train_loss
        ``(x, y) -> (loss, components)``: the forward pass and loss of one batch (possibly
        compiled).
    optimizer, scaler
        The optimizer and the GradScaler (enabled for fp16 only).
    clip
        Maximum global gradient norm; ``None`` or ``0`` for no clipping.
    totals
        The epoch's device sums, updated by every call.
    keep_grads
        Zero the gradients in place after a step instead of freeing them, so that they keep
        their addresses (CUDA graphs).
    """

    def __init__(
        self,
        train_loss: TrainLoss,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        clip: float | None,
        totals: EpochTotals,
        keep_grads: bool = False,
    ) -> None:
        self.train_loss = train_loss
        self.optimizer = optimizer
        self.scaler = scaler
        self.clip = clip
        self.totals = totals
        self.keep_grads = keep_grads
        self.takes_found_inf = takes_found_inf(optimizer)
        # 1 / the group's number of micro-batches, on the device: a CUDA graph reads it at
        # each replay, so the epoch's last, shorter group needs no graph of its own.
        self.loss_weight = torch.ones((), device=totals.device)
        self._weight = 1.0

    def set_group_size(self, size: int) -> None:
        """Average the gradients of the next micro-batches over ``size`` micro-batches."""
        weight = 1.0 / size
        if weight != self._weight:
            self.loss_weight.fill_(weight)  # a launch, not a host read
            self._weight = weight

    def micro_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Forward, loss and backward of one batch; returns the detached loss and components."""
        loss, components = self.train_loss(x, y)
        detached = loss.detach()
        self.totals.add_batch(detached, components)
        self.scaler.scale(loss * self.loss_weight).backward()
        return detached, components

    def optimizer_step(self) -> None:
        """Unscale, clip and step, unless the group's loss or gradient is not finite.

        With an fp16 GradScaler an overflow of the scaled gradients is the scaler's business:
        the step is skipped and the scale lowered, and nothing is reported. A non-finite loss
        is reported, and hidden from the scaler, since the forward pass's range does not
        depend on the scale. An optimizer that takes ``found_inf`` also takes the scale
        (``grad_scale``) and unscales in its own kernel, unless the gradients are clipped
        (which needs them unscaled): the scaler then only looks for overflows, as
        ``GradScaler.step`` does for fused optimizers, and saves a pass over the gradients.
        """
        optimizer, scaler, totals = self.optimizer, self.scaler, self.totals
        params = [p for group in optimizer.param_groups for p in group["params"]
                  if p.grad is not None]
        overflows: list[Tensor] = []
        grad_scale = None
        loss_bad = totals.group_bad
        if scaler.is_enabled() and self.takes_found_inf and not self.clip:
            # The per-device overflow flags that update() reads, from a read of the gradients.
            overflows = list(scaler._check_inf_per_device(optimizer).values())
            grad_scale = scaler._scale
            grad_bad = sum((f.to(totals.device) for f in overflows),
                           torch.zeros((), device=totals.device)) > 0
        else:
            if scaler.is_enabled():
                scaler.unscale_(optimizer)
                # The flags that unscale_ recorded and update() reads.
                overflows = list(scaler._found_inf_per_device(optimizer).values())
            grad_bad = ~torch.isfinite(gradient_probe(params, self.clip)).to(totals.device)
        if overflows:
            reported = loss_bad.clone()
            skip = loss_bad | grad_bad
            for found in overflows:
                found.mul_(~loss_bad.to(found.device))
        else:
            reported = loss_bad | grad_bad
            skip = reported
        if params:
            if self.takes_found_inf:
                with found_inf_flag(optimizer, skip, grad_scale):
                    optimizer.step()
            else:
                masked_step(optimizer, skip)
        if scaler.is_enabled():
            scaler.update()
        optimizer.zero_grad(set_to_none=not self.keep_grads)
        totals.end_group(bad=reported)
