"""Compile checks of the CUDA sources in ``kernels/`` and of the CUDA half of the module.

The CUDA kernels cannot run without a GPU, and most CI machines have none, but they do have the
CUDA toolkit; so CI at least compiles every ``kernels/*.cu`` with ``nvcc`` for sm_80, with all
warnings (nvcc's and the host compiler's) treated as errors, and checks that the object exports
the C entry point the extension module links against. It also compiles ``csrc/module.cpp`` as
a CUDA build does (``NOL_FAST_WITH_CUDA``: the CUDA bindings, the build record, the runtime
check), and checks that it calls that entry point. The tests are skipped where ``nvcc`` (or,
for the symbol checks, ``nm``; for the module, pybind11) is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
SOURCES = sorted(KERNELS.glob("*.cu"))
ENTRY_POINT = "nol_fast_multi_tensor_step_cuda"

Compiled = tuple[subprocess.CompletedProcess[str], Path]


@pytest.fixture(scope="module")
def compile_source(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Compiled]:
    """``compile_(source) -> (nvcc's result, object path)``, each source compiled once."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on the PATH: the CUDA sources cannot be compiled here")
    out_dir = tmp_path_factory.mktemp("nvcc")
    results: dict[Path, Compiled] = {}

    def compile_(source: Path) -> Compiled:
        if source not in results:
            obj = out_dir / f"{source.stem}.o"
            command = [
                nvcc, "-std=c++17", "-O3", "-Xcompiler", "-fPIC,-Wall", "-Werror", "all-warnings",
                "-gencode", "arch=compute_80,code=sm_80", "-c", str(source), "-o", str(obj),
            ]
            results[source] = (subprocess.run(command, capture_output=True, text=True), obj)
        return results[source]

    return compile_


def _symbols(obj: Path, *flags: str) -> dict[str, str]:
    """``{symbol: nm type letter}`` of ``obj`` (skips the test without ``nm``)."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm is not on the PATH: the object's symbols cannot be listed here")
    listing = subprocess.run([nm, *flags, str(obj)], capture_output=True, text=True,
                             check=True).stdout
    return {fields[-1]: fields[-2] for fields in map(str.split, listing.splitlines())
            if len(fields) >= 2}


def _assert_compiled(source: Path, result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"nvcc failed on {source.name} (exit code {result.returncode}):\n{result.stderr}"
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_cuda_source_compiles(source: Path, compile_source: Callable[[Path], Compiled]) -> None:
    """Every ``kernels/*.cu`` compiles for sm_80 without a warning."""
    result, _ = compile_source(source)
    _assert_compiled(source, result)


@pytest.mark.timeout(300)
def test_entry_point_is_exported(compile_source: Callable[[Path], Compiled]) -> None:
    """The multi-tensor optimizer kernel's object defines the unmangled C entry point."""
    source = KERNELS / "multi_tensor_optim.cu"
    result, obj = compile_source(source)
    _assert_compiled(source, result)
    symbols = _symbols(obj, "--defined-only", "--extern-only")
    assert symbols.get(ENTRY_POINT) == "T", (
        f"{ENTRY_POINT} is not a defined global function of {obj.name}: {symbols}"
    )


@pytest.mark.timeout(300)
def test_module_compiles_for_a_cuda_build(tmp_path: Path) -> None:
    """``csrc/module.cpp`` with ``NOL_FAST_WITH_CUDA`` and the macros setup.py defines compiles
    without a warning (nvcc drives the host compiler and adds the CUDA headers), and its object
    calls the kernels' C entry point."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on the PATH: the CUDA build cannot be compiled here")
    pybind11 = pytest.importorskip("pybind11")
    obj = tmp_path / "module.o"
    command = [
        nvcc, "-std=c++17", "-O1", "-Xcompiler", "-fPIC,-Wall,-Werror", "-DNOL_FAST_WITH_CUDA=1",
        '-DNOL_FAST_VERSION="0.0.0+test"', '-DNOL_FAST_CUDA_ARCHS="80;90"',
        f"-I{pybind11.get_include()}", f"-I{sysconfig.get_paths()['include']}",
        f"-I{ROOT / 'csrc'}", "-c", str(ROOT / "csrc" / "module.cpp"), "-o", str(obj),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    _assert_compiled(ROOT / "csrc" / "module.cpp", result)
    assert _symbols(obj, "--undefined-only").get(ENTRY_POINT) == "U", (
        f"module.cpp compiled with CUDA does not call {ENTRY_POINT}"
    )
