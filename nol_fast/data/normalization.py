"""Unit-Gaussian normalisation of inputs and targets, fitted on the training split only.

PDE fields come in very different scales (Darcy's coefficient is 3 or 12, its solution of
order 1e-2), and an operator learns far better from inputs of zero mean and unit variance per
channel. :class:`DataNormalizer` holds the statistics of the training split:

* the loaders (:func:`~nol_fast.data.create_data_loader` with ``normalize: true``) serve
  *encoded* inputs and *raw* targets, and carry the fitted normalizer as
  ``loader.normalizer``;
* the :class:`~nol_fast.training.Trainer` takes it from the training loader, decodes the
  model's output before the loss (so losses, metrics and predictions are in physical units,
  and the model learns targets of unit scale), and saves it in every checkpoint, so
  ``load_checkpoint``, ``evaluate`` and ``nol-fast evaluate`` decode as the run did.

Statistics are per channel, over samples and grid points, accumulated in float64.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

#: Added to the standard deviation, so a constant channel encodes to zeros instead of NaN.
EPS = 1e-6


class UnitGaussian(nn.Module):
    """``(v - mean) / (std + eps)`` per channel of ``(batch, channels, *grid)`` tensors.

    Examples
    --------
    >>> data = torch.randn(16, 2, 8) * torch.tensor([1.0, 5.0]).view(1, 2, 1) + 3.0
    >>> norm = UnitGaussian.fit(data)
    >>> encoded = norm.encode(data)
    >>> bool(encoded.mean().abs() < 1e-5), bool(torch.allclose(norm.decode(encoded), data))
    (True, True)
    """

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        if mean.dim() != 1 or mean.shape != std.shape:
            raise ValueError(f"mean and std must be 1-D of one length (one per channel), got "
                             f"{tuple(mean.shape)} and {tuple(std.shape)}")
        self.register_buffer("mean", mean.detach().to(torch.float32).clone())
        self.register_buffer("std", std.detach().to(torch.float32).clone())

    @classmethod
    def fit(cls, data: Tensor | Iterable[Tensor]) -> UnitGaussian:
        """Statistics of a ``(n, channels, *grid)`` tensor, or of an iterable of such batches."""
        batches = [data] if isinstance(data, Tensor) else data
        total = squares = None
        count = 0
        for batch in batches:
            if batch.dim() < 2:
                raise ValueError(f"expected (n, channels, *grid) tensors, got shape "
                                 f"{tuple(batch.shape)}")
            flat = batch.detach().to(torch.float64).transpose(0, 1).reshape(batch.shape[1], -1)
            if total is None:
                total, squares = torch.zeros_like(flat[:, 0]), torch.zeros_like(flat[:, 0])
            if flat.shape[0] != total.shape[0]:
                raise ValueError(f"batches have {total.shape[0]} and {flat.shape[0]} channels")
            total += flat.sum(1)
            squares += (flat**2).sum(1)
            count += flat.shape[1]
        if total is None or count == 0:
            raise ValueError("cannot fit a normalizer to no data")
        mean = total / count
        var = (squares / count - mean**2).clamp_min(0.0)
        return cls(mean, var.sqrt())

    def _view(self, t: Tensor, v: Tensor) -> Tensor:
        if v.dim() < 2 or v.shape[1] != t.numel():
            raise ValueError(f"normalizer for {t.numel()} channels got a tensor of shape "
                             f"{tuple(v.shape)}")
        return t.view(1, -1, *([1] * (v.dim() - 2))).to(v.device)

    def encode(self, v: Tensor) -> Tensor:
        """Physical values to normalised ones."""
        return (v - self._view(self.mean, v)) / (self._view(self.std, v) + EPS)

    def decode(self, v: Tensor) -> Tensor:
        """Normalised values back to physical ones (float32 or wider)."""
        v = v if v.dtype in (torch.float32, torch.float64) else v.float()
        return v * (self._view(self.std, v) + EPS) + self._view(self.mean, v)


class DataNormalizer(nn.Module):
    """The input and target normalizers of a dataset; either may be ``None``.

    Its ``state_dict`` is what checkpoints store (see :meth:`to_state` / :meth:`from_state`).
    """

    def __init__(self, x: UnitGaussian | None = None, y: UnitGaussian | None = None) -> None:
        super().__init__()
        self.x = x
        self.y = y

    @classmethod
    def fit(cls, x: Tensor | Iterable[Tensor] | None, y: Tensor | Iterable[Tensor] | None):
        """Fit on training inputs and/or targets (``None`` leaves that side unnormalised)."""
        return cls(None if x is None else UnitGaussian.fit(x),
                   None if y is None else UnitGaussian.fit(y))

    def encode_input(self, x: Tensor) -> Tensor:
        return x if self.x is None else self.x.encode(x)

    def decode_input(self, x: Tensor) -> Tensor:
        return x if self.x is None else self.x.decode(x)

    def decode_output(self, pred: Tensor) -> Tensor:
        """The model's (normalised) output in the targets' physical units."""
        return pred if self.y is None else self.y.decode(pred)

    def to_state(self) -> dict[str, dict[str, Tensor] | None]:
        """Plain tensors for a checkpoint: ``{'x': {'mean', 'std'} or None, 'y': ...}``."""
        return {side: None if norm is None else {"mean": norm.mean.cpu(), "std": norm.std.cpu()}
                for side, norm in (("x", self.x), ("y", self.y))}

    @classmethod
    def from_state(cls, state: dict) -> DataNormalizer:
        """The inverse of :meth:`to_state`; a malformed state raises ``ValueError``."""
        try:
            return cls(*(None if state[side] is None
                         else UnitGaussian(state[side]["mean"], state[side]["std"])
                         for side in ("x", "y")))
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed normalizer state: {error!r}") from None
