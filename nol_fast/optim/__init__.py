"""Optimizers and learning-rate schedulers of nol_fast.

:class:`FusedAdam` and :class:`FusedAdamW` are ``torch.optim``-compatible Adam/AdamW whose steps
run through the multi-tensor op of :mod:`nol_fast.ops.optim_step`; :class:`AdaBound` (and
AMSBound through ``amsbound=True``) complements ``torch.optim`` and steps through the same op;
:class:`WarmupScheduler` and :class:`PlateauScheduler` are the schedulers built by
:func:`nol_fast.training.optimizers.create_scheduler`.
"""

from nol_fast.optim.adabound import AdaBound
from nol_fast.optim.adam import FusedAdam, FusedAdamW
from nol_fast.optim.plateau import PlateauScheduler
from nol_fast.optim.schedulers import WarmupScheduler

__all__ = ["AdaBound", "FusedAdam", "FusedAdamW", "PlateauScheduler", "WarmupScheduler"]
