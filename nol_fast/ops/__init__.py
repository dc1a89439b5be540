"""Custom ops of nol_fast: one opaque op per hot computation, with per-device backends.

``nol_fast.ops.spectral_conv`` holds the spectral convolution of the FNO
(``torch.ops.nol_fast.spectral_conv``); ``nol_fast.ops.triton`` holds Triton kernels and is
imported only by the backends that use them.
"""
