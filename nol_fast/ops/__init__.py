"""Custom ops of nol_fast: one opaque op per hot computation, with per-device backends.

``nol_fast.ops.spectral_conv`` holds the spectral convolution of the FNO
(``torch.ops.nol_fast.spectral_conv``); the physics-informed losses run on
``nol_fast.ops.darcy_residual``, ``nol_fast.ops.navier_stokes_residual`` and
``nol_fast.ops.conservation``, whose backends ``nol_fast.ops.selection`` chooses;
``nol_fast.ops.triton`` holds Triton kernels and is imported only by the backends that use
them.
"""
