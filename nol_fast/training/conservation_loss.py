"""ConservationLoss: the mismatch in conserved quantities between two fields.

The quantities and the channel layouts are those of :mod:`nol_fast.physics.conservation`;
:class:`ConservationLoss` weighs their squared differences. It is importable from
:mod:`nol_fast.training.losses`, the module the Training API names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from nol_fast.physics.conservation import (
    CONSERVATION_TYPES,
    conserved_quantities,
    fluid_channels,
)
from nol_fast.physics.grid import domain_lengths
from nol_fast.training.loss_checks import check_field, check_same_shape, check_weight

__all__ = ["CONSERVATION_TYPES", "ConservationLoss"]


class ConservationLoss(nn.Module):
    """Penalise the difference in conserved quantities between two fields.

    For each type ``t`` the quantity ``Q_t`` is a domain integral, computed per sample as a
    Riemann sum on the grid (:mod:`nol_fast.physics.conservation`, one fused reduction per
    field):

    * ``'mass'``: ``∫ u dx``;
    * ``'momentum'``: the momentum components;
    * ``'energy'``: the L2 energy ``½ ∫ |u|² dx``.

    ``channels`` sets which channels hold what. By default (the scalar layout) every channel is
    a conserved density of its own, and the momentum of a scalar is its first moment
    ``∫ x_k u dx`` (one value per grid dimension; for a density carried by a velocity,
    ``d/dt ∫ x ρ = ∫ ρ v``, so matching first moments matches the centre of mass that the
    momentum moves; unlike mass and energy it is not invariant under a periodic shift). With
    ``channels={"density": ρ, "velocity": [...]}`` (the fluid layout) mass is ``∫ ρ``,
    momentum ``∫ ρ v_j`` and energy ``½ ∫ ρ |v|²``; without a density channel, unit density.

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
    channels
        ``None`` (scalar layout) or ``{"density": int | None, "velocity": [int, ...]}``.

    Attributes
    ----------
    last_components : dict[str, Tensor]
        After each call, the detached 0-dim unweighted term of every type (on the device).

    Examples
    --------
    >>> import torch
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
        channels: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(conservation_types, str):
            conservation_types = (conservation_types,)
        types = tuple(conservation_types)
        choices = ", ".join(CONSERVATION_TYPES)
        if not types:
            raise ValueError(f"conservation_types is empty; choose from: {choices}")
        for name in types:
            if name not in CONSERVATION_TYPES:
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
        self.weights = {t: check_weight(f"weights[{t!r}]", weights.get(t, 1.0)) for t in types}
        self.domain = domain
        self.channels = fluid_channels(channels, types)
        self.last_components: dict[str, Tensor] = {}

    def quantities(self, u: Tensor) -> dict[str, Tensor]:
        """Conserved quantities of ``u``.

        Parameters
        ----------
        u
            Field of shape ``(batch, channels, *grid)``.

        Returns
        -------
        dict[str, Tensor]
            For each type, ``(batch, n, n_components)``: in the scalar layout ``n`` is the
            number of channels, with one component for mass and energy and one per grid
            dimension for momentum; in the fluid layout ``n = 1``, with one component per
            velocity channel for momentum. float16 and bfloat16 fields are summed in float32.

        Examples
        --------
        >>> import torch
        >>> ConservationLoss(["mass", "momentum"]).quantities(torch.ones(1, 1, 4))["momentum"]
        tensor([[[0.3750]]])
        """
        check_field("u", u)
        return conserved_quantities(u, self.conservation_types, self.domain, self.channels)

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
        check_field("pred", pred)
        check_field("reference", reference)
        check_same_shape(pred, reference, "reference")
        q_pred, q_ref = self.quantities(pred), self.quantities(reference)
        components = {t: (q_pred[t] - q_ref[t]).square().mean() for t in self.conservation_types}
        self.last_components = {t: c.detach() for t, c in components.items()}
        return sum(self.weights[t] * c for t, c in components.items())

    def extra_repr(self) -> str:
        layout = "" if self.channels is None else f", channels={self.channels}"
        return f"weights={self.weights}, domain={self.domain!r}{layout}"
