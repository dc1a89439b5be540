"""``benchmarks/gpu_check.sh`` on a machine without CUDA: its CPU part runs, so it cannot rot.

The script runs every step at smoke-test sizes (``GPU_CHECK_SMOKE=1``): the CUDA tests are
collected and skip, and each benchmark command runs on the CPU with the arguments the script
gives it. The results file must hold every step with exit status 0, and a failing step must
make the script fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STEPS = ["versions and build", "CUDA tests", "host synchronisations of the Trainer",
         "kernel benchmark: spectral convolution", "kernel benchmark: optimizer step",
         "kernel benchmark: physics residuals", "end-to-end training step"]

pytestmark = [
    pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash"),
    pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU part of the script; with "
                       "CUDA run the whole script: bash benchmarks/gpu_check.sh"),
]


def _run(tmp_path: Path, python: str) -> tuple[subprocess.CompletedProcess, str]:
    results = tmp_path / "results.txt"
    env = {**os.environ, "GPU_CHECK_SMOKE": "1", "PYTHON": python}
    done = subprocess.run(["bash", str(SCRIPT), str(results)], env=env, capture_output=True,
                          text=True, timeout=900)
    return done, results.read_text()


def _steps(text: str) -> dict[str, int]:
    """``{step title: exit status}`` from the results file."""
    titles = re.findall(r"^== (.+)$", text, re.MULTILINE)
    statuses = [int(s) for s in re.findall(r"^-- exit status (\d+) after", text, re.MULTILINE)]
    assert titles[-1].startswith("done in")
    return dict(zip(titles[:-1], statuses, strict=True))


@pytest.mark.slow
def test_the_cpu_part_runs_every_step_into_one_results_file(tmp_path):
    pytest.importorskip("neuralop", reason="the e2e benchmark needs neuraloperator")
    done, text = _run(tmp_path, sys.executable)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _steps(text) == dict.fromkeys(STEPS, 0)
    assert "no CUDA device: the CPU-runnable part only" in text.splitlines()[1]
    assert re.search(r"^\d+ skipped in", text, re.MULTILINE)  # the CUDA tests, collected
    assert "nol_fast default" in text and "accuracy guard FAILED" not in text
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["results.txt"]


def test_a_failing_step_fails_the_script_and_the_others_still_run(tmp_path):
    done, text = _run(tmp_path, "false")
    assert done.returncode == 1
    assert _steps(text) == dict.fromkeys(STEPS, 1)
    assert "exit status 1" in done.stdout.splitlines()[-1]
