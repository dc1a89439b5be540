"""What an FNO block is made of: its options and the order of its parameters in the ops.

The ``nol_fast::fno_block`` op takes the block's parameters as one list of tensors; this module
is the one place that knows which tensors that list holds for a given set of options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

SKIP_KINDS = ("linear", "soft-gating", "identity", "none")


@dataclass(frozen=True)
class BlockSpec:
    """Options of one FNO block (those of :class:`nol_fast.models.layers.FNOBlock`).

    Attributes
    ----------
    n_modes : tuple of int
        Fourier modes per grid dimension.
    fno_skip, mlp_skip : str
        Skip kinds: ``'linear'``, ``'soft-gating'``, ``'identity'`` or ``'none'``.
    activation : str
        The block's activation; ``'none'`` after the last block.
    use_mlp : bool
        Whether the block has a channel MLP (whose own activation is GELU).
    """

    n_modes: tuple[int, ...]
    fno_skip: str
    mlp_skip: str
    activation: str
    use_mlp: bool

    def __post_init__(self) -> None:
        for name in ("fno_skip", "mlp_skip"):
            if getattr(self, name) not in SKIP_KINDS:
                raise ValueError(f"{name} must be one of {SKIP_KINDS}, got "
                                 f"{getattr(self, name)!r}")


@dataclass
class BlockParams:
    """The parameters of one block, as the ops use them.

    ``spectral_weight`` is complex ``(C, C, *kept)``; pointwise weights are ``(out, in)``;
    ``fno_skip`` / ``mlp_skip`` hold the linear skip's ``(C, C)`` weight, the soft-gating
    ``(C,)`` factors, or ``None``; the ``mlp_*`` entries are ``None`` without a channel MLP.
    """

    spectral_weight: torch.Tensor
    spectral_bias: torch.Tensor
    fno_skip: torch.Tensor | None = None
    mlp_weights: tuple[torch.Tensor, torch.Tensor] | None = None
    mlp_biases: tuple[torch.Tensor, torch.Tensor] | None = None
    mlp_skip: torch.Tensor | None = None


def has_weight(skip: str) -> bool:
    """Whether a skip of this kind has a parameter."""
    return skip in ("linear", "soft-gating")


def pack(params: BlockParams, spec: BlockSpec) -> list[torch.Tensor]:
    """The op's flat parameter list: the spectral weight first, as a real view."""
    flat = [torch.view_as_real(params.spectral_weight), params.spectral_bias]
    if has_weight(spec.fno_skip):
        flat.append(params.fno_skip)
    if spec.use_mlp:
        flat += [params.mlp_weights[0], params.mlp_biases[0], params.mlp_weights[1],
                 params.mlp_biases[1]]
        if has_weight(spec.mlp_skip):
            flat.append(params.mlp_skip)
    return flat


def unpack(flat: Sequence[torch.Tensor], spec: BlockSpec) -> BlockParams:
    """Inverse of :func:`pack` (the spectral weight comes back complex)."""
    items = list(flat)
    params = BlockParams(torch.view_as_complex(items.pop(0)), items.pop(0))
    if has_weight(spec.fno_skip):
        params.fno_skip = items.pop(0)
    if spec.use_mlp:
        w1, b1, w2, b2 = (items.pop(0) for _ in range(4))
        params.mlp_weights, params.mlp_biases = (w1, w2), (b1, b2)
        if has_weight(spec.mlp_skip):
            params.mlp_skip = items.pop(0)
    return params
