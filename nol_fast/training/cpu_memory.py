"""Freed CPU memory kept in the process: glibc malloc tuned for a training loop.

torch allocates every CPU tensor with ``malloc``. glibc serves large blocks (above its mmap
threshold, 128 KiB to 32 MiB as it adapts) with fresh ``mmap`` pages and returns them to the
kernel on ``free``, and it trims the top of its heap whenever more than twice that threshold is
free there. A training step allocates and frees the same activations and gradients every step,
so each step touches new pages again: an FNO step on a 64² grid took 10–12 thousand page
faults (each a kernel entry and a page cleared), about 15% of its time on the development CPU.

:func:`keep_freed_memory` raises both thresholds once per process (``mallopt``), so that freed
blocks stay in the heap and the next step reuses them: the step then takes a few dozen faults.
The cost is memory the process keeps after freeing it (at most about
:data:`TRIM_THRESHOLD` above what it uses), the trade torch's CUDA caching allocator makes on
GPUs. The Trainer calls it on CPU devices unless ``TrainingConfig.tune_cpu_malloc`` is False;
it is process-wide and stays for the life of the process, since glibc cannot return to its
adaptive thresholds.
"""

from __future__ import annotations

import ctypes
import functools
import logging

logger = logging.getLogger(__name__)

#: Blocks up to this size come from the heap instead of ``mmap``.
MMAP_THRESHOLD = 256 * 2 ** 20
#: Free memory at the top of the heap beyond this is returned to the kernel.
TRIM_THRESHOLD = 1024 * 2 ** 20

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def keep_freed_memory() -> str:
    """Tune glibc malloc to keep freed memory (once per process); a phrase for the log.

    Examples
    --------
    >>> keep_freed_memory()  # doctest: +SKIP
    'malloc keeps freed memory (mmap threshold 256 MiB, trim threshold 1024 MiB)'
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "system malloc (not glibc)"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and
            mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        logger.warning("mallopt refused the thresholds; CPU memory is allocated as before")
        return "system malloc (mallopt refused)"
    return (f"malloc keeps freed memory (mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim "
            f"threshold {TRIM_THRESHOLD >> 20} MiB)")
