"""Timing shared by the benchmarks: synchronised steps, interleaved rounds, medians, allocator.

CUDA kernels run asynchronously, so a step is timed between two device synchronisations;
otherwise the clock would stop when the launches are queued, not when the work is done.
Candidates are timed in interleaved rounds (each round runs every candidate once) rather than
one after the other, so that load from elsewhere on a shared machine, clock changes and cache
state hit all of them alike, and medians discard the rounds that such load spoils. On the CPU
every candidate runs on the allocator nol_fast's Trainer sets up (:func:`trainer_allocator`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

import torch

from nol_fast.training.cpu_memory import keep_freed_memory

Key = TypeVar("Key", bound=Hashable)


def trainer_allocator(device: torch.device) -> str:
    """Set up the CPU allocator of nol_fast's Trainer; what it is, for a table's header.

    On CPU devices the Trainer tunes glibc malloc for the whole process
    (:mod:`nol_fast.training.cpu_memory`), which spares every candidate's page faults, the
    baselines' too. Benchmarks call this before any candidate runs, so that all of them are
    timed on the same allocator, whatever order they are built in: the ratios then compare the
    candidates, not the allocators. Returns ``''`` on other devices.
    """
    return keep_freed_memory() if device.type == "cpu" else ""


def describe_threads(device: torch.device) -> str:
    """``'2 CPU threads'``, with the allocator on CPU devices: the headers' first words."""
    allocator = trainer_allocator(device)
    return f"{torch.get_num_threads()} CPU threads" + (f", {allocator}" if allocator else "")


def synchronized(step: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """``step`` followed by a synchronisation of ``device`` when it is a CUDA device.

    Timers that start from an idle device (pytest-benchmark's, :func:`elapsed_ms`) then cover
    the work ``step`` launched, not just the launches.

    Examples
    --------
    >>> synchronized(lambda: None, torch.device("cpu"))()
    """
    if device.type != "cuda":
        def run() -> None:
            step()
    else:
        def run() -> None:
            step()
            torch.cuda.synchronize(device)
    return run


#: Clocks a benchmark can read: wall time, or the process's CPU time (all its threads, user
#: and system). On a machine shared with other jobs the CPU time leaves out the time the
#: process waits for a core, so it is the steadier measure of a single-threaded CPU step; it
#: says nothing about GPU work.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def elapsed_ms(step: Callable[[], object], device: torch.device,
               clock: Callable[[], float] = time.perf_counter) -> float:
    """Milliseconds of one call of ``step``, from an idle ``device`` to the end of its work.

    Examples
    --------
    >>> elapsed_ms(lambda: None, torch.device("cpu")) >= 0
    True
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    run = synchronized(step, device)
    start = clock()
    run()
    return (clock() - start) * 1e3


def interleaved_medians(
    steps: Mapping[Key, Callable[[], object]],
    device: torch.device,
    repeat: int,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[Key, float]:
    """Median milliseconds of every step over ``repeat`` interleaved rounds.

    Each round calls every step once, in the order of ``steps``; the first ``warmup`` rounds
    (compilation, allocation, lazily created optimizer state) are not recorded. ``clock`` is
    one of :data:`CLOCKS` (default: wall time).

    Examples
    --------
    >>> medians = interleaved_medians({"noop": lambda: None}, torch.device("cpu"), repeat=3)
    >>> list(medians)
    ['noop']
    """
    if repeat < 1:
        raise ValueError(f"repeat must be a positive int, got {repeat}")
    samples: dict[Key, list[float]] = {key: [] for key in steps}
    for round_ in range(warmup + repeat):
        for key, step in steps.items():
            ms = elapsed_ms(step, device, clock)
            if round_ >= warmup:
                samples[key].append(ms)
    return {key: statistics.median(times) for key, times in samples.items()}
