"""Physics-informed training losses for neural operators.

A neural operator fitted to data alone can produce fields that violate the physics behind the
data. :class:`PhysicsInformedLoss` adds penalties for that to the data misfit: the residual
of the governing PDE, the error in the boundary conditions, and the drift of conserved
quantities, measured by :class:`ConservationLoss`. Each term is computed on its own, weighted
and summed, and its unweighted value is kept in ``last_components`` so a training loop can log
the balance between the terms without synchronising with the device.

All fields are tensors of shape ``(batch, channels, *grid)`` with 1, 2 or 3 grid dimensions,
sampled on the uniform grids of :mod:`nol_fast.physics.grid`. PDE residuals and boundary
errors are built-ins of :mod:`nol_fast.physics` chosen by name (the residuals of the standard
benchmarks, on fused kernels where they have one) or functions ``fn(u, coords) -> Tensor``;
this module is the layer the Training API specifies, the physics lives in
:mod:`nol_fast.physics`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from nol_fast.physics.boundary import BoundaryCondition
from nol_fast.physics.grid import uniform_grid
from nol_fast.physics.pde_residual import PDEResidual
from nol_fast.training.conservation_loss import CONSERVATION_TYPES, ConservationLoss
from nol_fast.training.loss_checks import (
    check_field,
    check_same_shape,
    check_scalar,
    check_weight,
    mean_square,
)
from nol_fast.training.metrics import relative_l2

__all__ = [
    "CONSERVATION_TYPES",
    "DATA_LOSSES",
    "TERMS",
    "ConservationLoss",
    "PhysicsInformedLoss",
    "RelativeL2Loss",
    "loss_from_config",
    "loss_from_name",
]

#: ``fn(u, coords) -> Tensor``: pointwise PDE residual or boundary error of the field ``u``.
FieldFn = Callable[[Tensor, Tensor], Tensor]
#: ``fn(pred, reference) -> Tensor``: a 0-dim loss.
PairLoss = Callable[[Tensor, Tensor], Tensor]

#: The terms of ``PhysicsInformedLoss``, in the order they are computed; the unweighted value
#: of term ``t`` is ``last_components[f"loss_{t}"]``.
TERMS = ("data", "pde", "boundary", "conservation")


class RelativeL2Loss(nn.Module):
    """Mean over the batch of ``||pred - target||_2 / ||target||_2`` per sample.

    The training loss of the FNO paper: every sample counts alike whatever its scale, and it
    optimises the reported metric directly (see :func:`~nol_fast.training.metrics.relative_l2`).

    Examples
    --------
    >>> import torch
    >>> loss = RelativeL2Loss()
    >>> float(loss(torch.full((2, 1, 4), 1.1), torch.ones(2, 1, 4)))  # doctest: +ELLIPSIS
    0.100000...
    """

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return relative_l2_loss(pred, target)


def relative_l2_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of the per-sample relative L2 error (:class:`RelativeL2Loss`)."""
    check_same_shape(pred, target, "target")
    return relative_l2(pred, target).mean()


#: Data terms of ``PhysicsInformedLoss`` by name.
DATA_LOSSES: dict[str, PairLoss] = {"l1": F.l1_loss, "mse": F.mse_loss,
                                    "rel_l2": relative_l2_loss}
#: Data losses of config-driven runs (``TrainingConfig.loss``).
NAMED_LOSSES: dict[str, Callable[[], nn.Module]] = {"mse": nn.MSELoss, "rel_l2": RelativeL2Loss}


def loss_from_name(name: str) -> nn.Module:
    """The loss module ``name`` (``'mse'`` or ``'rel_l2'``); ``ValueError`` lists the names."""
    if name not in NAMED_LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(NAMED_LOSSES)}")
    return NAMED_LOSSES[name]()


#: Keys of a ``physics_informed`` loss in a config, besides ``name``.
PHYSICS_KEYS = ("data_loss", "data_weight", "pde_weight", "boundary_weight",
                "conservation_weight", "pde", "boundary", "conservation")


def _named_with_options(value: object, what: str) -> tuple[str, dict[str, Any]]:
    """``'name'`` or ``{name: ..., **options}`` as ``(name, options)``."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        options = dict(value)
        return options.pop("name"), options
    raise ValueError(f"loss config: {what} must be a name or a mapping with a 'name', got "
                     f"{value!r}")


def loss_from_config(spec: str | Mapping[str, Any]) -> nn.Module:
    """The loss a config's ``training.loss`` describes.

    Parameters
    ----------
    spec
        A name of :data:`NAMED_LOSSES` (``'mse'``, ``'rel_l2'``), or a mapping with ``name``:
        ``{'name': 'rel_l2'}``, or ``{'name': 'physics_informed', ...}`` with the keys of
        :data:`PHYSICS_KEYS`: ``data_loss`` and the four weights of
        :class:`PhysicsInformedLoss`; ``pde``: a residual name or
        ``{name, grid, backend, **parameters}`` (:meth:`PhysicsInformedLoss.set_pde_residual`);
        ``boundary``: ``'dirichlet'``/``'periodic'`` or ``{name, value, dims}``;
        ``conservation``: ``{conservation_types, weights, domain, channels, reference}``.

    Examples
    --------
    >>> loss_fn = loss_from_config({"name": "physics_informed", "data_loss": "rel_l2",
    ...                             "pde": {"name": "darcy", "forcing": 1.0},
    ...                             "pde_weight": 1e-4, "boundary": "dirichlet"})
    >>> type(loss_fn.pde_residual).__name__, loss_fn.pde_weight
    ('PDEResidual', 0.0001)
    """
    name, options = _named_with_options(spec, "loss")
    if name in NAMED_LOSSES:
        if options:
            raise ValueError(f"loss config: the {name} loss takes no options, got "
                             f"{sorted(options)}")
        return loss_from_name(name)
    if name != "physics_informed":
        raise ValueError(f"unknown loss {name!r}; choose one of: "
                         f"{', '.join([*NAMED_LOSSES, 'physics_informed'])}")
    unknown = sorted(set(options) - set(PHYSICS_KEYS))
    if unknown:
        raise ValueError(f"loss config: unknown key(s) {unknown} for physics_informed; choose "
                         f"from: {', '.join(PHYSICS_KEYS)}")
    # YAML reads 1e-4 (no decimal point) as a string; the weights are numbers.
    kwargs = {k: float(v) if isinstance(v, str) and k.endswith("_weight") else v
              for k, v in options.items() if k == "data_loss" or k.endswith("_weight")}
    loss_fn = PhysicsInformedLoss(**kwargs)
    if options.get("pde") is not None:
        residual, parameters = _named_with_options(options["pde"], "pde")
        loss_fn.set_pde_residual(residual, **parameters)
    if options.get("boundary") is not None:
        condition, parameters = _named_with_options(options["boundary"], "boundary")
        loss_fn.set_boundary_conditions(condition, **parameters)
    if options.get("conservation") is not None:
        conservation = dict(options["conservation"])
        reference = conservation.pop("reference", "target")
        loss_fn.set_conservation_laws(ConservationLoss(**conservation), reference)
    return loss_fn


class PhysicsInformedLoss(nn.Module):
    """Weighted sum of data, PDE-residual, boundary and conservation terms.

    With ``u = pred`` and ``coords`` the grid coordinates, the terms are

    * ``data``: ``data_loss(pred, target)`` (mean squared error by default);
    * ``pde``: ``mean(r²)`` with ``r`` the residual set by :meth:`set_pde_residual`: a
      built-in residual of :mod:`nol_fast.physics.residuals` (``r = residual(u, inputs)``,
      fused where a kernel exists) or ``r = residual_fn(u, coords)``;
    * ``boundary``: ``mean(b²)`` with ``b = boundary_fn(u, coords)``;
    * ``conservation``: ``conservation(pred, reference)``, ``reference`` being ``target``
      (or ``inputs``, see :meth:`set_conservation_laws`).

    A term is active when its weight is non-zero and its function is set (the data term:
    when a target is passed); the loss is ``Σ weight · term`` over the active terms.

    Parameters
    ----------
    data_weight, pde_weight, boundary_weight, conservation_weight
        Finite weights >= 0. They are plain attributes, checked again on every call, so a
        training loop may change them between steps.
    data_loss
        A name from :data:`DATA_LOSSES` (``'mse'``, ``'l1'``, ``'rel_l2'``) or
        ``callable(pred, target)`` returning a 0-dim tensor.

    Attributes
    ----------
    last_components : dict[str, Tensor]
        After each call, the detached 0-dim unweighted value of every active term, keyed
        ``'loss_data'``, ``'loss_pde'``, ``'loss_boundary'``, ``'loss_conservation'``, and
        with a :class:`ConservationLoss` its types as ``'loss_conservation_<type>'``; left on
        the device. The Trainer logs them as ``train_loss_pde``, ``val_loss_pde``, ...

    Examples
    --------
    >>> import torch
    >>> loss_fn = PhysicsInformedLoss(data_weight=1.0, pde_weight=0.1, boundary_weight=0.05)
    >>> loss_fn.set_pde_residual("heat", diffusivity=0.01)   # steady: -κΔu = f
    >>> loss_fn.set_boundary_conditions("periodic")
    >>> pred, target = torch.rand(4, 1, 32), torch.rand(4, 1, 32)
    >>> loss = loss_fn(pred, target)
    >>> sorted(loss_fn.last_components)
    ['loss_boundary', 'loss_data', 'loss_pde']
    """

    def __init__(
        self,
        data_weight: float = 1.0,
        pde_weight: float = 1.0,
        boundary_weight: float = 1.0,
        conservation_weight: float = 1.0,
        data_loss: str | PairLoss = "mse",
    ) -> None:
        super().__init__()
        self.data_weight = data_weight
        self.pde_weight = pde_weight
        self.boundary_weight = boundary_weight
        self.conservation_weight = conservation_weight
        self._weights()
        if isinstance(data_loss, str):
            if data_loss not in DATA_LOSSES:
                raise ValueError(
                    f"unknown data_loss {data_loss!r}; choose one of: "
                    f"{', '.join(sorted(DATA_LOSSES))}, or pass a callable(pred, target)"
                )
            data_loss = DATA_LOSSES[data_loss]
        elif not callable(data_loss):
            raise TypeError(f"data_loss must be a name or a callable, got {data_loss!r}")
        self.data_loss = data_loss
        self.pde_residual: PDEResidual | FieldFn | None = None
        self.boundary_fn: FieldFn | None = None
        self.conservation: PairLoss | None = None
        self.conservation_reference = "target"
        self.last_components: dict[str, Tensor] = {}

    def _weights(self) -> dict[str, float]:
        return {t: check_weight(f"{t}_weight", getattr(self, f"{t}_weight")) for t in TERMS}

    def _set_fn(self, name: str, fn: Callable[..., Tensor] | None) -> None:
        """Store ``fn`` under ``name``; an ``nn.Module`` is registered (moved by ``.to()``)."""
        if fn is not None and not callable(fn):
            raise TypeError(f"expected a callable or None, got {fn!r}")
        if isinstance(getattr(self, name, None), nn.Module):
            delattr(self, name)
        setattr(self, name, fn)

    def set_pde_residual(
        self, residual_fn: str | PDEResidual | FieldFn | None, **parameters: Any
    ) -> None:
        """Set the PDE residual, penalised by its mean square (``None`` removes the term).

        Parameters
        ----------
        residual_fn
            The name of a built-in residual (``'burgers'``, ``'darcy'``, ``'heat'``,
            ``'navier_stokes'``, ``'wave'``; :mod:`nol_fast.physics.residuals` gives each
            one's layout), a :class:`~nol_fast.physics.pde_residual.PDEResidual`, or a
            function ``residual_fn(u, coords) -> r``. A function gets ``u = pred``, shape
            ``(batch, channels, *grid)``, and the ``coords`` given to :meth:`forward`, by
            default ``uniform_grid(u.shape[2:])``, shape ``(*grid, n_dims)``; ``r`` is
            pointwise, shape ``(batch, ...)``, e.g. the residual on the whole grid or on its
            interior. A built-in gets ``u`` and the ``inputs`` of :meth:`forward`.
        **parameters
            For a name: the residual's ``grid``, ``backend`` and physical parameters
            (``PDEResidual(name, **parameters)``).

        Examples
        --------
        >>> loss_fn = PhysicsInformedLoss()
        >>> loss_fn.set_pde_residual("darcy", forcing=1.0)
        >>> loss_fn.pde_residual.grid
        Grid(domain=1.0, periodic=False, dt=None)
        """
        if isinstance(residual_fn, str):
            residual_fn = PDEResidual(residual_fn, **parameters)
        elif parameters:
            raise TypeError(f"parameters {sorted(parameters)} are for a built-in residual "
                            f"given by name, not for {residual_fn!r}")
        self._set_fn("pde_residual", residual_fn)

    def set_boundary_conditions(self, boundary_fn: str | FieldFn | None, **options: Any) -> None:
        """Set the boundary error, penalised by its mean square (``None`` removes the term).

        Parameters
        ----------
        boundary_fn
            ``'dirichlet'`` or ``'periodic'`` (:mod:`nol_fast.physics.boundary`), or
            ``boundary_fn(u, coords) -> b`` with the arguments of :meth:`set_pde_residual`;
            ``b`` is the pointwise error on the boundary, shape ``(batch, ...)``, e.g.
            ``u[..., 0] - g`` for the Dirichlet condition ``u = g`` at ``x = 0``.
        **options
            For a name: ``value`` (Dirichlet) and ``dims``.
        """
        if isinstance(boundary_fn, str):
            boundary_fn = BoundaryCondition(boundary_fn, **options)
        elif options:
            raise TypeError(f"options {sorted(options)} are for a built-in boundary condition "
                            f"given by name, not for {boundary_fn!r}")
        self._set_fn("boundary_fn", boundary_fn)

    def set_conservation_laws(
        self, conservation: ConservationLoss | PairLoss | None, reference: str = "target"
    ) -> None:
        """Set the conservation term (``None`` removes it).

        Parameters
        ----------
        conservation
            A :class:`ConservationLoss` or ``callable(pred, reference)`` returning a 0-dim
            tensor.
        reference
            ``'target'`` compares ``pred`` with the target; ``'inputs'`` compares it with the
            ``inputs`` of :meth:`forward` (for operators that advance a field in time, whose
            input and output must carry the same mass or energy).
        """
        if reference not in ("target", "inputs"):
            raise ValueError(f"reference must be 'target' or 'inputs', got {reference!r}")
        self._set_fn("conservation", conservation)
        self.conservation_reference = reference

    def forward(
        self,
        pred: Tensor,
        target: Tensor | None = None,
        inputs: Tensor | None = None,
        coords: Tensor | None = None,
    ) -> Tensor:
        """Weighted sum of the active terms.

        Parameters
        ----------
        pred
            Model output, shape ``(batch, channels, *grid)``.
        target
            Ground truth of the same shape; enables the data term.
        inputs
            The model's input, ``(batch, n_inputs, *grid)``: what a built-in residual reads
            (Darcy's coefficient, the earlier records of a time-dependent field), and the
            conservation reference when that is ``'inputs'``.
        coords
            Passed to residual and boundary functions; defaults to
            ``uniform_grid(pred.shape[2:])`` on ``pred``'s device and dtype.

        Returns
        -------
        Tensor
            0-dim loss.
        """
        check_field("pred", pred)
        if target is not None:
            check_field("target", target)
            check_same_shape(pred, target, "target")
        weights = self._weights()
        fns = {
            "data": self.data_loss if target is not None else None,
            "pde": self.pde_residual,
            "boundary": self.boundary_fn,
            "conservation": self.conservation,
        }
        active = [t for t in TERMS if fns[t] is not None and weights[t] > 0]
        if not active:
            raise ValueError(
                "PhysicsInformedLoss has no active term: each needs a non-zero weight and its "
                "input (data: a target; pde: set_pde_residual; boundary: "
                "set_boundary_conditions; conservation: set_conservation_laws); got weights "
                f"{weights} and target={'given' if target is not None else 'None'}"
            )
        builtin = isinstance(self.pde_residual, PDEResidual)
        needs_coords = ("pde" in active and not builtin) or "boundary" in active
        if coords is None and needs_coords:
            coords = uniform_grid(pred.shape[2:], device=pred.device, dtype=pred.dtype)
        batch = pred.shape[0]
        components: dict[str, Tensor] = {}
        if "data" in active:
            components["data"] = check_scalar("data_loss", self.data_loss(pred, target))
        if "pde" in active:
            if builtin:
                components["pde"] = self.pde_residual.mean_square(pred, inputs)
            else:
                residual = self.pde_residual(pred, coords)
                components["pde"] = mean_square("residual_fn", residual, batch)
        if "boundary" in active:
            boundary_error = self.boundary_fn(pred, coords)
            components["boundary"] = mean_square("boundary_fn", boundary_error, batch)
        if "conservation" in active:
            name = self.conservation_reference
            reference = target if name == "target" else inputs
            if reference is None:
                raise ValueError(
                    f"the conservation term compares pred with {name}, but {name} is None"
                )
            check_same_shape(pred, reference, name)
            components["conservation"] = check_scalar(
                "conservation", self.conservation(pred, reference)
            )
        self.last_components = {f"loss_{t}": c.detach() for t, c in components.items()}
        if "conservation" in components and isinstance(self.conservation, ConservationLoss):
            self.last_components.update({f"loss_conservation_{t}": c for t, c
                                         in self.conservation.last_components.items()})
        return sum(weights[t] * c for t, c in components.items())

    def extra_repr(self) -> str:
        return ", ".join(f"{t}_weight={getattr(self, f'{t}_weight')!r}" for t in TERMS)
