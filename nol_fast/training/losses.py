"""Physics-informed training losses for neural operators.

A neural operator fitted to data alone can produce fields that violate the physics behind the
data. :class:`PhysicsInformedLoss` adds penalties for that to the data misfit: the residual
of the governing PDE, the error in the boundary conditions, and the drift of conserved
quantities, measured by :class:`ConservationLoss`. Each term is computed on its own, weighted
and summed, and its unweighted value is kept in ``last_components`` so a training loop can log
the balance between the terms without synchronising with the device.

All fields are tensors of shape ``(batch, channels, *grid)`` with 1, 2 or 3 grid dimensions,
sampled on the uniform periodic grid of :mod:`nol_fast.physics.grid` (cell-start points on
``[0, L)^d``). PDE residuals and boundary errors are supplied as functions
``fn(u, coords) -> Tensor``; the derivative operators that such functions need live in
:mod:`nol_fast.physics`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nol_fast.physics.grid import cell_volume, domain_lengths, uniform_grid
from nol_fast.training.metrics import relative_l2

__all__ = [
    "CONSERVATION_TYPES",
    "DATA_LOSSES",
    "TERMS",
    "ConservationLoss",
    "PhysicsInformedLoss",
    "RelativeL2Loss",
    "loss_from_name",
]

#: ``fn(u, coords) -> Tensor``: pointwise PDE residual or boundary error of the field ``u``.
FieldFn = Callable[[Tensor, Tensor], Tensor]
#: ``fn(pred, reference) -> Tensor``: a 0-dim loss.
PairLoss = Callable[[Tensor, Tensor], Tensor]

DATA_LOSSES: dict[str, PairLoss] = {"l1": F.l1_loss, "mse": F.mse_loss}
#: Keys of ``PhysicsInformedLoss.last_components``, in the order the terms are computed.
TERMS = ("data", "pde", "boundary", "conservation")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class RelativeL2Loss(nn.Module):
    """Mean over the batch of ``||pred - target||_2 / ||target||_2`` per sample.

    The training loss of the FNO paper: every sample counts alike whatever its scale, and it
    optimises the reported metric directly (see :func:`~nol_fast.training.metrics.relative_l2`).

    Examples
    --------
    >>> loss = RelativeL2Loss()
    >>> float(loss(torch.full((2, 1, 4), 1.1), torch.ones(2, 1, 4)))  # doctest: +ELLIPSIS
    0.100000...
    """

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        _check_same_shape(pred, target, "target")
        return relative_l2(pred, target).mean()


#: Data losses of config-driven runs (``TrainingConfig.loss``).
NAMED_LOSSES: dict[str, Callable[[], nn.Module]] = {"mse": nn.MSELoss, "rel_l2": RelativeL2Loss}


def loss_from_name(name: str) -> nn.Module:
    """The loss module ``name`` (``'mse'`` or ``'rel_l2'``); ``ValueError`` lists the names."""
    if name not in NAMED_LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(NAMED_LOSSES)}")
    return NAMED_LOSSES[name]()


def _mass(flat: Tensor, grid: tuple[int, ...], domain: float | Sequence[float]) -> Tensor:
    # flat: (batch, channels, n_points) -> (batch, channels, 1)
    return flat.sum(-1, keepdim=True) * cell_volume(grid, domain)


def _momentum(flat: Tensor, grid: tuple[int, ...], domain: float | Sequence[float]) -> Tensor:
    # x: (n_points, n_dims); flat: (batch, channels, n_points) -> (batch, channels, n_dims)
    x = uniform_grid(grid, domain, device=flat.device, dtype=flat.dtype).reshape(-1, len(grid))
    return (flat @ x) * cell_volume(grid, domain)


def _energy(flat: Tensor, grid: tuple[int, ...], domain: float | Sequence[float]) -> Tensor:
    # flat: (batch, channels, n_points) -> (batch, channels, 1)
    return 0.5 * flat.square().sum(-1, keepdim=True) * cell_volume(grid, domain)


_QUANTITIES = {"energy": _energy, "mass": _mass, "momentum": _momentum}
CONSERVATION_TYPES: tuple[str, ...] = tuple(sorted(_QUANTITIES))


def _check_weight(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number >= 0, else raise a ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_field(name: str, u: object) -> None:
    """Raise unless ``u`` is a tensor of shape ``(batch, channels, *grid)``, 1 to 3 grid dims."""
    if not isinstance(u, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(u).__name__}")
    if not 3 <= u.ndim <= 5:
        raise ValueError(
            f"{name} must have shape (batch, channels, *grid) with 1, 2 or 3 grid dims, "
            f"got shape {tuple(u.shape)}"
        )


def _check_same_shape(pred: Tensor, other: Tensor, other_name: str) -> None:
    if pred.shape != other.shape:
        raise ValueError(
            f"pred and {other_name} must have the same shape, got pred {tuple(pred.shape)} "
            f"and {other_name} {tuple(other.shape)}"
        )


def _check_scalar(what: str, value: object) -> Tensor:
    """Return ``value`` if it is a 0-dim floating-point tensor, else raise."""
    if not isinstance(value, Tensor) or value.ndim != 0 or not value.is_floating_point():
        got = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{what} must return a 0-dim floating-point tensor, got {got}")
    return value


def _upcast(x: Tensor) -> Tensor:
    """Accumulate float16/bfloat16 tensors in float32: their sums lose too many digits."""
    return x.float() if x.dtype in _LOW_PRECISION else x


def _mean_square(what: str, value: object, batch: int) -> Tensor:
    """Mean square of the pointwise tensor ``value`` of shape ``(batch, ...)``."""
    if not isinstance(value, Tensor) or not value.is_floating_point():
        got = f"dtype {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
        raise TypeError(f"{what} must return a real floating-point tensor, got {got}")
    if value.ndim == 0 or value.shape[0] != batch or value.numel() == 0:
        raise ValueError(
            f"{what} must return a non-empty pointwise tensor of shape (batch, ...) with "
            f"batch={batch}, got shape {tuple(value.shape)}"
        )
    return _upcast(value).square().mean()


class ConservationLoss(nn.Module):
    """Penalise the difference in conserved quantities between two fields.

    For each type ``t`` the quantity ``Q_t`` is computed per sample and channel as a Riemann
    sum on the periodic grid (``sum(f) * cell_volume == mean(f) * |domain|``):

    * ``'mass'``: ``Q = ∫ u dx``;
    * ``'momentum'``: the first moment ``Q_k = ∫ x_k u dx``, one value per spatial dimension
      ``k``. A scalar field carries no velocity, so this is the convention used: for a
      density ``ρ`` obeying ``∂ρ/∂t + ∇·(ρv) = 0``, ``d/dt ∫ x ρ dx = ∫ ρ v dx`` is the total
      momentum, and matching first moments matches the centre of mass that the momentum
      moves. Unlike mass and energy it is not invariant under a periodic shift of the field;
    * ``'energy'``: ``Q = ½ ∫ u² dx``.

    The loss is ``Σ_t w_t · mean((Q_t(pred) - Q_t(reference))²)``, the mean taken over
    batch, channels and components.

    Parameters
    ----------
    conservation_types
        Types to penalise, from :data:`CONSERVATION_TYPES`; a single name is accepted.
    weights
        ``{type: weight}`` for some of ``conservation_types``; the others weigh 1.0.
    domain
        Length of every grid dimension, or one length per dimension.

    Attributes
    ----------
    last_components : dict[str, Tensor]
        After each call, the detached 0-dim unweighted term of every type (on the device).

    Examples
    --------
    >>> loss_fn = ConservationLoss(
    ...     conservation_types=["mass", "momentum", "energy"],
    ...     weights={"mass": 1.0, "momentum": 0.5, "energy": 0.1},
    ... )
    >>> u = torch.rand(2, 1, 16, 16)
    >>> float(loss_fn(u, u))
    0.0
    >>> sorted(loss_fn.last_components)
    ['energy', 'mass', 'momentum']
    """

    def __init__(
        self,
        conservation_types: str | Sequence[str] = ("mass",),
        weights: Mapping[str, float] | None = None,
        domain: float | Sequence[float] = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(conservation_types, str):
            conservation_types = (conservation_types,)
        types = tuple(conservation_types)
        choices = ", ".join(CONSERVATION_TYPES)
        if not types:
            raise ValueError(f"conservation_types is empty; choose from: {choices}")
        for name in types:
            if name not in _QUANTITIES:
                raise ValueError(f"unknown conservation type {name!r}; choose one of: {choices}")
        if len(set(types)) != len(types):
            raise ValueError(f"conservation_types lists a type twice: {types!r}")
        weights = dict(weights or {})
        for name in weights:
            if name not in types:
                raise ValueError(
                    f"weights has an entry for {name!r}, which is not one of the "
                    f"conservation_types {types!r}"
                )
        domain_lengths(domain, len(domain) if isinstance(domain, Sequence) else 1)  # validate
        self.conservation_types = types
        self.weights = {t: _check_weight(f"weights[{t!r}]", weights.get(t, 1.0)) for t in types}
        self.domain = domain
        self.last_components: dict[str, Tensor] = {}

    def quantities(self, u: Tensor) -> dict[str, Tensor]:
        """Conserved quantities of ``u``, per sample and channel.

        Parameters
        ----------
        u
            Field of shape ``(batch, channels, *grid)``.

        Returns
        -------
        dict[str, Tensor]
            For each type, a tensor of shape ``(batch, channels, n_components)``: one
            component for mass and energy, one per grid dimension for momentum. float16 and
            bfloat16 fields are summed in float32.

        Examples
        --------
        >>> ConservationLoss(["mass", "momentum"]).quantities(torch.ones(1, 1, 4))["momentum"]
        tensor([[[0.3750]]])
        """
        _check_field("u", u)
        grid = tuple(u.shape[2:])
        flat = _upcast(u).flatten(2)  # (batch, channels, n_points)
        return {t: _QUANTITIES[t](flat, grid, self.domain) for t in self.conservation_types}

    def forward(self, pred: Tensor, reference: Tensor) -> Tensor:
        """Weighted squared difference of the conserved quantities of two fields.

        Parameters
        ----------
        pred, reference
            Fields of the same shape ``(batch, channels, *grid)``.

        Returns
        -------
        Tensor
            0-dim loss.
        """
        _check_field("pred", pred)
        _check_field("reference", reference)
        _check_same_shape(pred, reference, "reference")
        q_pred, q_ref = self.quantities(pred), self.quantities(reference)
        components = {t: (q_pred[t] - q_ref[t]).square().mean() for t in self.conservation_types}
        self.last_components = {t: c.detach() for t, c in components.items()}
        return sum(self.weights[t] * c for t, c in components.items())

    def extra_repr(self) -> str:
        return f"weights={self.weights}, domain={self.domain!r}"


class PhysicsInformedLoss(nn.Module):
    """Weighted sum of data, PDE-residual, boundary and conservation terms.

    With ``u = pred`` and ``coords`` the grid coordinates, the terms are

    * ``data``: ``data_loss(pred, target)`` (mean squared error by default);
    * ``pde``: ``mean(r²)`` with ``r = residual_fn(u, coords)``;
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
        A name from :data:`DATA_LOSSES` (``'mse'``, ``'l1'``) or ``callable(pred, target)``
        returning a 0-dim tensor.

    Attributes
    ----------
    last_components : dict[str, Tensor]
        After each call, the detached 0-dim unweighted value of every active term, keyed
        ``'data'``, ``'pde'``, ``'boundary'``, ``'conservation'``; left on the device.

    Examples
    --------
    >>> def laplace_1d(u, coords):  # u'' = 0 in the interior, by central differences
    ...     h = coords[1, 0] - coords[0, 0]
    ...     return (u[..., 2:] - 2 * u[..., 1:-1] + u[..., :-2]) / h**2
    >>> loss_fn = PhysicsInformedLoss(data_weight=1.0, pde_weight=0.1, boundary_weight=0.05)
    >>> loss_fn.set_pde_residual(laplace_1d)
    >>> pred, target = torch.rand(4, 1, 32), torch.rand(4, 1, 32)
    >>> loss = loss_fn(pred, target)
    >>> sorted(loss_fn.last_components)
    ['data', 'pde']
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
        self.pde_residual: FieldFn | None = None
        self.boundary_fn: FieldFn | None = None
        self.conservation: PairLoss | None = None
        self.conservation_reference = "target"
        self.last_components: dict[str, Tensor] = {}

    def _weights(self) -> dict[str, float]:
        return {t: _check_weight(f"{t}_weight", getattr(self, f"{t}_weight")) for t in TERMS}

    def _set_fn(self, name: str, fn: Callable[..., Tensor] | None) -> None:
        """Store ``fn`` under ``name``; an ``nn.Module`` is registered (moved by ``.to()``)."""
        if fn is not None and not callable(fn):
            raise TypeError(f"expected a callable or None, got {fn!r}")
        if isinstance(getattr(self, name, None), nn.Module):
            delattr(self, name)
        setattr(self, name, fn)

    def set_pde_residual(self, residual_fn: FieldFn | None) -> None:
        """Set the PDE residual, penalised by its mean square (``None`` removes the term).

        Parameters
        ----------
        residual_fn
            ``residual_fn(u, coords) -> r``. ``u`` is ``pred``, shape
            ``(batch, channels, *grid)``; ``coords`` is the ``coords`` given to
            :meth:`forward`, by default ``uniform_grid(u.shape[2:])``, shape
            ``(*grid, n_dims)``. ``r`` is pointwise, shape ``(batch, ...)``, e.g. the
            residual on the whole grid or on its interior.
        """
        self._set_fn("pde_residual", residual_fn)

    def set_boundary_conditions(self, boundary_fn: FieldFn | None) -> None:
        """Set the boundary error, penalised by its mean square (``None`` removes the term).

        Parameters
        ----------
        boundary_fn
            ``boundary_fn(u, coords) -> b`` with the arguments of :meth:`set_pde_residual`;
            ``b`` is the pointwise error on the boundary, shape ``(batch, ...)``, e.g.
            ``u[..., 0] - g`` for the Dirichlet condition ``u = g`` at ``x = 0``.
        """
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
            Model input of the same shape as ``pred``; used only as the conservation
            reference when that is ``'inputs'``.
        coords
            Passed to the residual and boundary functions; defaults to
            ``uniform_grid(pred.shape[2:])`` on ``pred``'s device and dtype.

        Returns
        -------
        Tensor
            0-dim loss.
        """
        _check_field("pred", pred)
        if target is not None:
            _check_field("target", target)
            _check_same_shape(pred, target, "target")
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
        if coords is None and ("pde" in active or "boundary" in active):
            coords = uniform_grid(pred.shape[2:], device=pred.device, dtype=pred.dtype)
        batch = pred.shape[0]
        components: dict[str, Tensor] = {}
        if "data" in active:
            components["data"] = _check_scalar("data_loss", self.data_loss(pred, target))
        if "pde" in active:
            residual = self.pde_residual(pred, coords)
            components["pde"] = _mean_square("residual_fn", residual, batch)
        if "boundary" in active:
            boundary_error = self.boundary_fn(pred, coords)
            components["boundary"] = _mean_square("boundary_fn", boundary_error, batch)
        if "conservation" in active:
            name = self.conservation_reference
            reference = target if name == "target" else inputs
            if reference is None:
                raise ValueError(
                    f"the conservation term compares pred with {name}, but {name} is None"
                )
            _check_same_shape(pred, reference, name)
            components["conservation"] = _check_scalar(
                "conservation", self.conservation(pred, reference)
            )
        self.last_components = {t: c.detach() for t, c in components.items()}
        return sum(weights[t] * c for t, c in components.items())

    def extra_repr(self) -> str:
        return ", ".join(f"{t}_weight={getattr(self, f'{t}_weight')!r}" for t in TERMS)
