"""MemoryProfiler: peak memory of training, on CUDA and on the CPU."""

from __future__ import annotations

import resource
import sys
from typing import Any

import torch

from nol_fast.training.callbacks.base import TrainingCallback

GIB = 1024**3


def process_peak_rss_bytes() -> int:
    """Peak resident set size of this process (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def process_current_rss_bytes() -> int:
    """Current resident set size, from ``/proc/self/statm`` where it exists."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * resource.getpagesize()
    except OSError:
        return process_peak_rss_bytes()


class MemoryProfiler(TrainingCallback):
    """Record peak memory per epoch and over the whole run.

    On CUDA it reads the caching allocator's peak (``torch.cuda.max_memory_allocated``, reset at
    the start of training) and what it reserved; on the CPU the process's peak resident set size
    (which covers the whole process since it started). Each epoch's peak is added to the epoch
    logs as ``peak_memory_gb``, and kept in :attr:`epoch_peaks_gb`; :attr:`device` is the device
    measured (``None`` before training).

    Examples
    --------
    >>> memory_profiler = MemoryProfiler()
    >>> # trainer.train(epochs=10, callbacks=[memory_profiler])
    >>> # memory_profiler.get_memory_summary()['peak_memory_gb']
    """

    def __init__(self) -> None:
        self.device: torch.device | None = None
        self.epoch_peaks_gb: list[float] = []

    def reset_state(self) -> None:
        self.epoch_peaks_gb = []

    def _is_cuda(self) -> bool:
        return self.device is not None and self.device.type == "cuda"

    def _peak_bytes(self) -> int:
        if self._is_cuda():
            return torch.cuda.max_memory_allocated(self.device)
        return process_peak_rss_bytes()

    def on_train_begin(self, trainer) -> None:
        self.device = torch.device(trainer.device)
        if self._is_cuda():
            torch.cuda.reset_peak_memory_stats(self.device)

    def on_epoch_end(self, trainer, epoch, train_losses, val_losses) -> None:
        peak_gb = self._peak_bytes() / GIB
        self.epoch_peaks_gb.append(peak_gb)
        trainer.logs["peak_memory_gb"] = peak_gb

    def get_memory_summary(self) -> dict[str, float]:
        """Memory statistics in GiB: ``peak_memory_gb`` and ``current_memory_gb``.

        On CUDA also ``reserved_memory_gb``. Every value is a float; the device and the
        per-epoch peaks are the attributes :attr:`device` and :attr:`epoch_peaks_gb`.
        """
        if self._is_cuda():
            current = torch.cuda.memory_allocated(self.device)
        else:
            current = process_current_rss_bytes()
        summary = {
            "peak_memory_gb": self._peak_bytes() / GIB,
            "current_memory_gb": current / GIB,
        }
        if self._is_cuda():
            summary["reserved_memory_gb"] = torch.cuda.max_memory_reserved(self.device) / GIB
        return summary

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_peaks_gb": list(self.epoch_peaks_gb)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch_peaks_gb = list(state["epoch_peaks_gb"])
