"""glibc malloc tuned to keep freed memory: counted in page faults, by the kernel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nol_fast.training import TrainingConfig

ROOT = Path(__file__).resolve().parents[1]

# Allocates and fills tensors of 32, 4, 8 and 4 MiB, then frees them (as a training step does
# with its activations), 50 times before and 50 times after the tuning, in a fresh process, and
# prints the minor page faults of each 50, from /proc/self/stat (field 10).
SCRIPT = """
import torch
from nol_fast.training.cpu_memory import keep_freed_memory

def faults():
    return int(open("/proc/self/stat").read().split(") ")[1].split()[7])

STEPS = 50

def step():
    activations = [torch.empty(n).fill_(1.0) for n in (2 ** 23, 2 ** 20, 2 ** 21, 2 ** 20)]
    del activations

def rounds():
    step()  # the first allocations of this size
    start = faults()
    for _ in range(STEPS):
        step()
    return faults() - start

before = rounds()
status = keep_freed_memory()
print(before, rounds(), status)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc: Linux only")
def test_freed_activations_are_reused_without_page_faults():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, check=True)
    before, after, status = result.stdout.split(maxsplit=2)
    assert status.startswith("malloc keeps freed memory"), status
    # 50 steps of 12 288 pages: before, glibc returns most of them to the kernel and faults
    # them in again every step (two thirds to all of them here, by its adaptive thresholds);
    # after, the steps reuse the heap, which grows once at most (by a 4 MiB tensor's pages)
    assert int(after) <= 2048
    assert int(before) > 50 * 12288 // 2


def test_tune_cpu_malloc_must_be_a_bool():
    with pytest.raises(ValueError, match="tune_cpu_malloc must be True or False"):
        TrainingConfig(tune_cpu_malloc="yes")
