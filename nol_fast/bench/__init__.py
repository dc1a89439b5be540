"""Timing harnesses behind ``nol-fast benchmark`` and the pytest-benchmark suites of benchmarks/.

:mod:`~nol_fast.bench.spectral` times the spectral convolution backends,
:mod:`~nol_fast.bench.optim` one optimizer step and :mod:`~nol_fast.bench.physics` the fused
PDE residuals, each against its anchors in the same run; all time through
:mod:`~nol_fast.bench.timing`, so the CLI tables and the pytest suites measure the same work
the same way.
"""
