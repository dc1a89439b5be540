"""Smoke test of an installed nol-fast, run from outside the source tree.

``.ci/run`` runs it in a fresh virtual environment after installing a built wheel, cibuildwheel
after building each wheel (``pyproject.toml``), and on a GPU node it checks a CUDA wheel
(``docs/building-wheels.md``)::

    python .ci/wheel_smoke.py --extension cpu    # CPU wheel: nol_fast._C with the CPU kernels
    python .ci/wheel_smoke.py --extension none   # built with NOL_FAST_BUILD_EXT=0
    python .ci/wheel_smoke.py --extension cuda   # CUDA wheel, on a machine with a GPU

It checks that

1. ``nol_fast`` is imported from the installation, not from a source tree;
2. ``nol-fast info`` reports the compiled extension as ``--extension`` says it should be, and
   its build record names the installed version;
3. the optimizer step runs on the matching backend (the compiled kernel, or the reference one)
   and agrees with ``torch.optim.AdamW``;
4. ``nol-fast train`` trains a small FNO for a few seconds, and the training loss falls.

It exits with status 1 and one line naming the failed check.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE_TREE = Path(__file__).resolve().parents[1]
# A training run of a few seconds on two CPU cores: the heat equation at 16 x 16.
TRAIN_CONFIG = """\
model: {model_type: fno, n_modes: [6, 6], hidden_channels: 8, n_layers: 2}
data: {dataset: heat, resolution: 16, n_train: 40, n_val: 10, n_test: 10, batch_size: 10}
training: {epochs: 3, learning_rate: 3.0e-3, warmup_steps: 2}
"""


class SmokeTestFailure(Exception):
    """A check of this script failed; the message says which and what was seen."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeTestFailure(message)


def run(command: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run ``command``; its stdout, or a failure with its output."""
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    check(result.returncode == 0, f"'{' '.join(command)}' exited with {result.returncode}:\n"
          f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return result.stdout


def check_import() -> str:
    """Import nol_fast from the installation; return the installed version."""
    import nol_fast

    location = Path(nol_fast.__file__).resolve()
    check(SOURCE_TREE not in location.parents,
          f"nol_fast was imported from the source tree ({location}), not the installation")
    version = importlib.metadata.version("nol-fast")
    check(version.split("+")[0] == nol_fast.__version__,
          f"installed version {version} does not match nol_fast.__version__ "
          f"{nol_fast.__version__}")
    print(f"import: nol_fast {version} from {location.parent}")
    return version


def check_info(extension: str, version: str, env: dict[str, str], cwd: Path) -> None:
    """``nol-fast info`` (the console script) reports the extension as expected."""
    script = Path(sys.executable).with_name("nol-fast")
    check(script.is_file(), f"the console script {script} was not installed")
    lines = run([str(script), "info"], env, cwd).splitlines()
    record = next((line for line in lines if line.startswith("compiled extension: ")), "")
    optimizer = {line.split(":")[0]: line for line in lines if line.startswith("optimizer_step")}
    if extension == "none":
        check(record.startswith("compiled extension: nol_fast._C is not built"),
              f"expected no compiled extension, got: {record!r}")
        check("cpu (unavailable: nol_fast._C is not built" in optimizer["optimizer_step on cpu"],
              f"the cpu optimizer backend should be unavailable: {optimizer}")
    else:
        built_as = f"compiled extension: nol_fast._C loaded: built as nol-fast {version} by "
        check(record.startswith(built_as), f"expected a line starting {built_as!r}, got "
              f"{record!r}")
        check("cpu (available)" in optimizer["optimizer_step on cpu"],
              f"the compiled CPU kernels should be available: {optimizer}")
        has_cuda = "no CUDA kernels" not in record
        check(has_cuda is (extension == "cuda"),
              f"expected {'' if extension == 'cuda' else 'no '}CUDA kernels: {record!r}")
        if extension == "cuda":
            check("cuda (available)" in optimizer["optimizer_step on cuda"],
                  f"the compiled CUDA kernels should be available: {optimizer}")
    print(f"info: {record}")


def check_optimizer(extension: str) -> None:
    """FusedAdamW on the backend that goes with the extension agrees with torch.optim.AdamW."""
    import torch

    from nol_fast.optim import FusedAdamW, multi_tensor

    device = torch.device("cuda" if extension == "cuda" else "cpu")
    expected = {"none": "reference", "cpu": "cpu", "cuda": "cuda"}[extension]
    if extension != "cuda":  # on CUDA the automatic choice prefers Triton when installed
        chosen = multi_tensor.resolve_backend(None, device)
        check(chosen == expected, f"automatic optimizer backend is {chosen!r}, expected "
              f"{expected!r}")
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=generator).to(device).requires_grad_()
              for shape in ((33, 7), (1000,), (5,))]  # fmt: skip
    oracle = [p.detach().clone().requires_grad_() for p in params]
    ours = FusedAdamW(params, lr=1e-2, weight_decay=0.1, backend=expected)
    theirs = torch.optim.AdamW(oracle, lr=1e-2, weight_decay=0.1)
    for _ in range(10):
        for p, q in zip(params, oracle, strict=True):
            p.grad = q.grad = torch.sin(3 * q.detach()) + 0.1
        ours.step()
        theirs.step()
    try:
        for p, q in zip(params, oracle, strict=True):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)
    except AssertionError as error:
        message = f"FusedAdamW on {expected!r} does not match torch.optim.AdamW: {error}"
        raise SmokeTestFailure(message) from None
    print(f"optimizer: FusedAdamW on the {expected!r} backend ({device.type}) matches "
          "torch.optim.AdamW over 10 steps")


def check_training(extension: str, env: dict[str, str], work: Path) -> None:
    """``python -m nol_fast train`` on a small config: it finishes and the loss falls."""
    import torch

    config = work / "smoke.yaml"
    config.write_text(TRAIN_CONFIG)
    out = work / "run"
    device = "cuda" if extension == "cuda" else "cpu"
    # One CPU thread: on a busy machine, two threads of such small ops wait for each other
    # (3 epochs took 45 s with two threads and 5 s with one on a loaded 2-core machine).
    env = {**env, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    printed = run([sys.executable, "-m", "nol_fast", "-q", "train", "--config", str(config),
                   "--out", str(out), "--device", device], env, work)  # fmt: skip
    seconds = time.perf_counter() - start
    check("best validation relative L2 error:" in printed, f"no result printed:\n{printed}")
    for name in ("checkpoints/best.pt", "checkpoints/last.pt", "report.png"):
        check((out / name).is_file(), f"training wrote no {name}")
    losses = torch.load(out / "checkpoints/last.pt", weights_only=True)["history"]["train_loss"]
    check(len(losses) == 3 and losses[-1] < losses[0],
          f"the training loss did not fall over 3 epochs: {losses}")
    print(f"train: 3 epochs on {device} in {seconds:.1f} s, training loss "
          f"{losses[0]:.4g} -> {losses[-1]:.4g}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extension", required=True, choices=("cpu", "cuda", "none"),
                        help="what the installation should hold: nol_fast._C with the CPU "
                        "kernels, with the CUDA kernels too, or no compiled extension")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nol-fast-smoke-") as tmp:
        work = Path(tmp)
        # Generated data goes to this temporary folder, not the user's cache.
        env = {**os.environ, "NOL_FAST_CACHE_DIR": str(work / "cache")}
        try:
            version = check_import()
            check_info(args.extension, version, env, work)
            check_optimizer(args.extension)
            check_training(args.extension, env, work)
        except SmokeTestFailure as failure:
            print(f"wheel smoke test failed: {failure}", file=sys.stderr)
            return 1
    print(f"wheel smoke test passed (--extension {args.extension})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
