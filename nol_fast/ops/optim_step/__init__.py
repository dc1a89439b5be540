"""Backends of the multi-tensor optimizer step (:mod:`nol_fast.optim.multi_tensor`).

``tables`` packs a group's tensors into the address and chunk tables that the device kernels
read (the Triton kernel in :mod:`nol_fast.ops.triton.optim` and the CUDA kernel); ``cpu`` and
``cuda`` wrap the compiled kernels of ``nol_fast._C``.
"""
