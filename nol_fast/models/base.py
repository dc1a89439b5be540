"""NeuralOperatorBase: what every model in :mod:`nol_fast.models` has in common.

Training code, checkpoints and the CLI treat models through this small interface: the channel
counts and number of spatial dimensions, a parameter count, a summary dict for logs, an input
check with a readable error, and ``model_config``, the plain-data recipe :func:`create_model`
records so that a checkpoint can rebuild the model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class NeuralOperatorBase(nn.Module):
    """Base class of the neural operators.

    Subclasses set ``in_channels``, ``out_channels`` and ``n_dims`` (the number of spatial
    dimensions) in their constructor and take inputs of shape ``(batch, in_channels, *grid)``
    with ``n_dims`` grid dimensions of any size.

    Attributes
    ----------
    in_channels, out_channels : int
        Channels of the input and output functions.
    n_dims : int
        Number of spatial dimensions of the grid.
    model_config : dict or None
        ``{'model_type': name, **options}`` as plain data (lists, numbers, strings), set by
        :func:`~nol_fast.models.create_model`; ``create_model(**)`` on it rebuilds the model.
        ``None`` for a model built by calling its class directly.

    Examples
    --------
    >>> from nol_fast.models import FNO
    >>> model = FNO(n_modes=(8, 8), hidden_channels=16)
    >>> model.get_model_summary()["n_dims"]
    2
    """

    in_channels: int
    out_channels: int
    n_dims: int
    model_config: dict[str, Any] | None = None

    def count_parameters(self, trainable_only: bool = True) -> int:
        """Number of real numbers in the parameters.

        A complex parameter counts twice (its real and imaginary parts), so the count is the
        number of real degrees of freedom the optimizer updates.

        Parameters
        ----------
        trainable_only : bool
            Count only parameters with ``requires_grad`` set.

        Examples
        --------
        >>> from nol_fast.models import FNO
        >>> FNO(n_modes=(4,), hidden_channels=4, n_layers=1).count_parameters()
        251
        """
        total = 0
        for param in self.parameters():
            if trainable_only and not param.requires_grad:
                continue
            total += param.numel() * (2 if param.is_complex() else 1)
        return total

    def get_model_summary(self) -> dict[str, Any]:
        """Describe the model for logs and reports.

        Returns
        -------
        dict
            ``model_class``, ``in_channels``, ``out_channels``, ``n_dims``, ``n_parameters``
            (all, in real numbers), ``n_trainable_parameters``, and ``model_config`` when it
            is set.

        Examples
        --------
        >>> from nol_fast.models import create_model
        >>> summary = create_model("fno", {"n_modes": [4]}).get_model_summary()
        >>> summary["model_config"]["model_type"]
        'fno'
        """
        summary: dict[str, Any] = {
            "model_class": type(self).__name__,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "n_dims": self.n_dims,
            "n_parameters": self.count_parameters(trainable_only=False),
            "n_trainable_parameters": self.count_parameters(trainable_only=True),
        }
        if self.model_config is not None:
            summary["model_config"] = dict(self.model_config)
        return summary

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` has shape ``(batch, in_channels, *grid)``.

        Examples
        --------
        >>> from nol_fast.models import FNO
        >>> FNO(n_modes=(4, 4)).check_input(torch.zeros(2, 3, 8, 8))
        Traceback (most recent call last):
        ...
        ValueError: FNO expects input of shape (batch, 1, *grid) with 2 grid dims, got (2, 3, 8, 8)
        """
        shape = tuple(x.shape)
        if x.dim() != self.n_dims + 2 or shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (batch, {self.in_channels}, *grid) "
                f"with {self.n_dims} grid dims, got {shape}"
            )
