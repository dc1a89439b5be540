"""Complex parameters held as real views, for FSDP2's flat collectives.

FSDP2 all-gathers and reduce-scatters the parameters of a module group as one flat buffer of a
single dtype, so a group holding the spectral convolutions' complex weights next to real biases
is refused. :func:`store_as_real` re-registers each complex parameter as a real parameter of
shape ``(..., 2)`` (:func:`torch.view_as_real`) behind a parametrization that hands the module
its complex view again: the module's code, its forward pass and the gradients are unchanged,
and an elementwise optimizer (Adam, AdamW, SGD: complex numbers as pairs of reals) takes the
same steps. Under a mixed-precision policy the view is taken in float32, since torch has no
complex bfloat16.

The parametrization renames the parameter: ``blocks.0.spectral.weight`` becomes
``blocks.0.spectral.parametrizations.weight.original0``. :func:`to_portable` and
:func:`from_portable` convert state dicts between that layout and the model's own, so that
checkpoints load into the model on one process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize


class RealView(nn.Module):
    """Parametrization of a complex parameter stored as its real view ``(..., 2)``."""

    def forward(self, real: torch.Tensor) -> torch.Tensor:
        if real.dtype not in (torch.float32, torch.float64):
            real = real.float()  # bf16/fp16 under a mixed-precision policy: no complex type
        return torch.view_as_complex(real)

    def right_inverse(self, value: torch.Tensor) -> list[torch.Tensor]:
        # A list: parametrize lets a right inverse returning a sequence change the dtype.
        return [torch.view_as_real(value)]


def store_as_real(model: nn.Module) -> list[str]:
    """Re-register every complex parameter of ``model`` as its real view; returns their names
    in the model's own (portable) naming, in ``named_parameters`` order."""
    names = [name for name, param in model.named_parameters() if param.is_complex()]
    for name in names:
        owner, _, attribute = name.rpartition(".")
        module = model.get_submodule(owner)
        parametrize.register_parametrization(module, attribute, RealView(), unsafe=True)
    return names


def stored_as_real(model: nn.Module) -> list[str]:
    """The (portable) names of the parameters of ``model`` that :func:`store_as_real` holds as
    real views."""
    names = []
    for path, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for attribute, chain in module.parametrizations.items():
                if any(isinstance(step, RealView) for step in chain):
                    names.append(f"{path}.{attribute}" if path else attribute)
    return names


def stored_name(name: str) -> str:
    """The name under which :func:`store_as_real` keeps the complex parameter ``name``.

    Examples
    --------
    >>> stored_name("blocks.0.spectral.weight")
    'blocks.0.spectral.parametrizations.weight.original0'
    """
    owner, _, attribute = name.rpartition(".")
    prefix = f"{owner}." if owner else ""
    return f"{prefix}parametrizations.{attribute}.original0"


def portable_names(names: Iterable[str], complex_names: Iterable[str]) -> dict[str, str]:
    """Map each stored parameter name in ``names`` to the model's own name."""
    back = {stored_name(name): name for name in complex_names}
    return {name: back.get(name, name) for name in names}


def to_portable(state: Mapping[str, Any], complex_names: Iterable[str]) -> dict[str, Any]:
    """A state dict in the stored layout turned into the model's own: real views of complex
    parameters become complex tensors under their own names, in place of the stored ones."""
    renamed = portable_names(state, complex_names)
    converted = {}
    for name, value in state.items():
        portable = renamed[name]
        if portable != name and isinstance(value, torch.Tensor):
            value = torch.view_as_complex(value.contiguous())
        converted[portable] = value
    return converted


def from_portable(state: Mapping[str, Any], complex_names: Iterable[str]) -> dict[str, Any]:
    """Inverse of :func:`to_portable`."""
    complex_names = set(complex_names)
    converted = {}
    for name, value in state.items():
        if name in complex_names and isinstance(value, torch.Tensor):
            converted[stored_name(name)] = torch.view_as_real(value)
        else:
            converted[name] = value
    return converted


def complex_state_to_portable(state: Mapping[str, Any]) -> dict[str, Any]:
    """An optimizer's per-parameter state for a complex parameter stored as a real view: each
    tensor of the parameter's shape ``(..., 2)`` becomes complex, scalars (``step``) stay."""
    return {
        key: torch.view_as_complex(value.contiguous())
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[-1] == 2
        and value.is_floating_point() else value
        for key, value in state.items()
    }
