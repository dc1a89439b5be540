"""Triton kernels (optional: need the ``triton`` package): the spectral convolution's channel
mixing, the optimizer step, and the Darcy residual and conservation reductions
(``nol_fast.ops.triton.darcy_residual``, ``nol_fast.ops.triton.conservation``, imported by
the backends that use them).

Importing this package imports ``triton``; nothing else in ``nol_fast`` imports it eagerly, so
the library works without Triton and only code that asks for these kernels needs it.

The kernels run on CUDA tensors, or on CPU tensors when the Triton interpreter is active
(``TRITON_INTERPRET=1`` set before the kernels are first imported), which is how the tests run;
``INTERPRETED`` says which.
"""

from nol_fast.ops.triton.optim import INTERPRETED, adabound_step_triton, adam_step_triton
from nol_fast.ops.triton.spectral_conv import spectral_mix_backward, spectral_mix_forward

__all__ = [
    "INTERPRETED",
    "adabound_step_triton",
    "adam_step_triton",
    "spectral_mix_backward",
    "spectral_mix_forward",
]
