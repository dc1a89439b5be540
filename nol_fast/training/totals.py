"""What a training epoch sums on the device, and reading it back in one transfer.

The training loop must not wait for the device per step, so nothing it computes per batch is
read on the host: the losses, the loss components, and the record of non-finite values are
added up into device tensors by :class:`EpochTotals`, with tensor operations only (no Python
branch on a device value). The loop reads them with :meth:`EpochTotals.read`, one
device-to-host copy, every ``log_frequency`` batches and at the end of the epoch.

Because the updates are plain tensor operations on tensors that live for the whole epoch, they
can also be captured in a CUDA graph and replayed: the batch counter that dates a non-finite
value is a device tensor too, not a Python int baked into the graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

#: ``first_bad_kind`` values: what was not finite first.
LOSS, GRADIENT = 0, 1
_KIND_NAMES = {LOSS: "loss", GRADIENT: "gradient"}


class NonFiniteLossError(FloatingPointError):
    """The training loss, or a gradient, became NaN or infinite.

    Attributes
    ----------
    epoch, batch
        0-based epoch and 0-based batch index in it (for a gradient, the last batch of the
        optimizer step's accumulation group).
    kind
        ``'loss'`` or ``'gradient'``.
    """

    def __init__(self, epoch: int, batch: int, kind: str = "loss"):
        self.epoch = epoch
        self.batch = batch
        self.kind = kind
        what = "training loss" if kind == "loss" else "gradient"
        super().__init__(
            f"non-finite {what} at epoch {epoch + 1}, batch {batch}; its optimizer step was "
            f"skipped, so the weights stay finite. Training stopped and checkpoints already "
            f"written are kept. Lower the learning rate, enable gradient_clipping, or set "
            f"skip_nonfinite=True in the TrainingConfig to skip such steps"
        )


@dataclass(frozen=True)
class TotalsReading:
    """The host values of :class:`EpochTotals` at one read.

    Attributes
    ----------
    loss_sum, finite_batches
        Sum of the finite batch losses, and their number.
    skipped_batches
        Batches of optimizer steps skipped for a non-finite loss or gradient.
    first_bad_batch
        0-based index in the epoch of the first batch whose loss (or whose optimizer step's
        gradient) was not finite, or ``None``.
    first_bad_kind
        :data:`LOSS` or :data:`GRADIENT`, for ``first_bad_batch``.
    components
        Sums of the loss components over the batches with a finite loss.
    """

    loss_sum: float
    finite_batches: float
    skipped_batches: float
    first_bad_batch: int | None
    first_bad_kind: int
    components: dict[str, float]

    @property
    def mean_loss(self) -> float:
        """Mean loss over the batches with a finite loss (NaN when there are none)."""
        return self.loss_sum / self.finite_batches if self.finite_batches else float("nan")

    def raise_if_nonfinite(self, epoch: int) -> None:
        """Raise :class:`NonFiniteLossError` for the first non-finite value of ``epoch``."""
        if self.first_bad_batch is not None:
            raise NonFiniteLossError(epoch, self.first_bad_batch,
                                     _KIND_NAMES[self.first_bad_kind])

    def epoch_metrics(self, with_skipped: bool) -> dict[str, float]:
        """``train_loss``, ``train_<component>`` means, and ``skipped_steps`` if asked for."""
        metrics = {"train_loss": self.mean_loss}
        for name, total in self.components.items():
            metrics[f"train_{name}"] = (total / self.finite_batches if self.finite_batches
                                        else float("nan"))
        if with_skipped:
            metrics["skipped_steps"] = self.skipped_batches
        return metrics


class EpochTotals:
    """Device sums of one training epoch, updated per batch and per optimizer step.

    Per batch, :meth:`add_batch` adds the loss and its components when they are finite, and
    marks the batch's accumulation group as bad when they are not. Per optimizer step,
    :meth:`end_group` takes the step's verdict (skipped for a non-finite loss or gradient, or
    not) and starts the next group.

    Parameters
    ----------
    device
        Where the sums live: the training device.

    Examples
    --------
    >>> totals = EpochTotals(torch.device("cpu"))
    >>> totals.add_batch(torch.tensor(2.0), {})
    >>> totals.add_batch(torch.tensor(float("nan")), {})
    >>> totals.end_group(bad=totals.group_bad)
    >>> reading = totals.read()
    >>> reading.mean_loss, reading.skipped_batches, reading.first_bad_batch
    (2.0, 2.0, 1)
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device

        def zero(dtype: torch.dtype = torch.float64) -> Tensor:
            return torch.zeros((), dtype=dtype, device=device)

        self.loss_sum = zero()
        self.finite_batches = zero()
        self.skipped_batches = zero()
        self.first_bad_batch = torch.full((), -1, dtype=torch.int64, device=device)
        self.first_bad_kind = zero(torch.int64)
        self.batches = zero(torch.int64)  # batches seen this epoch: dates a bad one
        self.group_batches = zero()  # batches of the current accumulation group
        self.group_bad = zero(torch.bool)  # a batch of the current group had a bad loss
        self.components: dict[str, Tensor] = {}

    def reset(self) -> None:
        """Zero every sum for a new epoch, in place (captured graphs keep the tensors)."""
        for tensor in (self.loss_sum, self.finite_batches, self.skipped_batches,
                       self.first_bad_kind, self.batches, self.group_batches, self.group_bad,
                       *self.components.values()):
            tensor.zero_()
        self.first_bad_batch.fill_(-1)

    def add_batch(self, loss: Tensor, components: Mapping[str, Tensor]) -> None:
        """Add one batch's loss (0-dim, detached) and components; no host read."""
        finite = torch.isfinite(loss)
        self.loss_sum.add_(torch.where(finite, loss.double(), 0.0))
        self.finite_batches.add_(finite)
        for name, value in components.items():
            if name not in self.components:
                self.components[name] = torch.zeros((), dtype=torch.float64, device=self.device)
            self.components[name].add_(torch.where(finite, value.double(), 0.0))
        self._mark_first_bad(~finite, self.batches, LOSS)
        self.group_bad.logical_or_(~finite)
        self.group_batches.add_(1)
        self.batches.add_(1)

    def end_group(self, bad: Tensor) -> None:
        """Close an accumulation group after its optimizer step.

        ``bad`` (0-dim bool) says whether the step was skipped for a non-finite loss or
        gradient: the group's batches count as skipped, and a bad gradient whose group had
        finite losses is dated by the group's last batch (a bad loss was dated by its batch).
        """
        self.skipped_batches.add_(self.group_batches * bad)
        self._mark_first_bad(bad & ~self.group_bad, self.batches - 1, GRADIENT)
        self.group_bad.zero_()
        self.group_batches.zero_()

    def _mark_first_bad(self, bad: Tensor, batch: Tensor, kind: int) -> None:
        first = bad & (self.first_bad_batch < 0)
        self.first_bad_batch.copy_(torch.where(first, batch, self.first_bad_batch))
        self.first_bad_kind.copy_(torch.where(first, kind, self.first_bad_kind))

    def read(self) -> TotalsReading:
        """The sums on the host, in one device-to-host copy (a synchronisation point)."""
        names = list(self.components)
        sums = torch.stack([self.loss_sum, self.finite_batches, self.skipped_batches,
                            *(self.components[n] for n in names)])
        bad = torch.stack([self.first_bad_batch, self.first_bad_kind]).to(torch.float64)
        values = torch.cat([sums, bad]).tolist()  # the one host read
        loss_sum, finite, skipped, *rest = values
        first_bad, kind = int(rest[-2]), int(rest[-1])
        return TotalsReading(
            loss_sum=loss_sum, finite_batches=finite, skipped_batches=skipped,
            first_bad_batch=first_bad if first_bad >= 0 else None, first_bad_kind=kind,
            components=dict(zip(names, rest[:-2], strict=True)),
        )
