"""Optimizers and learning-rate schedulers of nol_fast.

:class:`AdaBound` (and AMSBound through ``amsbound=True``) complements ``torch.optim``;
:class:`WarmupScheduler` and :class:`PlateauScheduler` are the schedulers built by
:func:`nol_fast.training.optimizers.create_scheduler`.
"""

from nol_fast.optim.adabound import AdaBound
from nol_fast.optim.schedulers import PlateauScheduler, WarmupScheduler

__all__ = ["AdaBound", "PlateauScheduler", "WarmupScheduler"]
