"""nol_fast: performance-first training of neural operators on PDE data.

The public modules follow the Training API: ``nol_fast.training`` (Trainer, TrainingConfig),
``nol_fast.training.callbacks``, ``nol_fast.training.optimizers``, ``nol_fast.training.losses``,
``nol_fast.models``, ``nol_fast.data``, ``nol_fast.config`` and
``nol_fast.distributed.strategies``. ``nol_fast.backends()`` reports which backend of each custom
op (``nol_fast.ops``) runs on this machine.
"""

from nol_fast.backends import backends

__version__ = "0.1.0"

__all__ = ["__version__", "backends"]
