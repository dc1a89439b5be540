"""The multi-tensor optimizer step op: Adam, AdamW and AdaBound over a whole parameter group.

Laid out like every op (see :mod:`nol_fast.ops.spectral_conv`):

- :mod:`~nol_fast.ops.optim_step.op`: the entry points :func:`~.op.adam_step` and
  :func:`~.op.adabound_step`, dispatch and backend selection;
- :mod:`~nol_fast.ops.optim_step.reference`: the update in plain torch, the oracle and the
  fallback;
- :mod:`~nol_fast.ops.optim_step.cpu` and :mod:`~nol_fast.ops.optim_step.cuda`: the compiled
  kernels of ``nol_fast._C``; the Triton kernel is :mod:`nol_fast.ops.triton.optim` (kept
  there so that importing nol_fast never imports triton);
- :mod:`~nol_fast.ops.optim_step.tables`: the host tables the device kernels read.

The package imports none of them, so that a backend module can import ``tables`` without
importing the op back. The optimizer classes of :mod:`nol_fast.optim` call the op; nothing
here imports them.
"""
