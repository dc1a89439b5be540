"""Build script for the compiled extension ``nol_fast._C``.

Metadata lives in pyproject.toml. This file adds the extension, built from

- the C++ sources in ``csrc/`` (CPU kernels and the pybind11 module), always;
- the CUDA sources in ``kernels/``, compiled with ``nvcc`` and linked in, when CUDA is enabled.

The kernels take tensors as addresses and sizes, so the extension includes no torch headers:
it builds without torch (pip's isolated build works) and runs with any torch version.

Environment switches
--------------------
``NOL_FAST_BUILD_EXT=0``
    Build no extension; the package then runs on its reference and Triton paths.
``NOL_FAST_BUILD_CUDA=auto|1|0``
    ``auto`` (default) adds the CUDA kernels when ``nvcc`` is found and an NVIDIA driver is
    loaded; ``1`` requires them; ``0`` leaves them out.
``NOL_FAST_CUDA_ARCHS``
    Semicolon-separated compute capabilities to build for (default ``80;90``); PTX of the
    highest is embedded for newer GPUs.

The extension is optional: when no C++ compiler (or OpenMP) is available, installation goes on
without it and says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent
CXX_FLAGS = [
    "-std=c++17",
    "-O3",
    "-fopenmp",
    "-fvisibility=hidden",
    # Round as the reference ops do (no fused multiply-add) and let sqrt vectorise.
    "-ffp-contract=off",
    "-fno-math-errno",
]


def nvcc_path() -> str | None:
    """``nvcc`` from ``$CUDA_HOME/bin`` or the ``PATH``."""
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home and (Path(cuda_home) / "bin" / "nvcc").exists():
        return str(Path(cuda_home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def cuda_home(nvcc: str) -> Path:
    """The CUDA toolkit of ``nvcc``: ``$CUDA_HOME``, the directory above its ``bin``, or
    ``/usr/local/cuda`` (for an ``nvcc`` linked from elsewhere)."""
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                      Path(nvcc).resolve().parent.parent, "/usr/local/cuda"):  # fmt: skip
        if candidate and (Path(candidate) / "include" / "cuda_runtime_api.h").exists():
            return Path(candidate)
    raise RuntimeError(f"no CUDA headers found for {nvcc}; set CUDA_HOME")


def cuda_wanted() -> bool:
    """Whether to compile ``kernels/*.cu`` (see ``NOL_FAST_BUILD_CUDA``)."""
    mode = os.environ.get("NOL_FAST_BUILD_CUDA", "auto")
    if mode == "0":
        return False
    found = nvcc_path() is not None
    if mode == "1":
        if not found:
            raise RuntimeError("NOL_FAST_BUILD_CUDA=1 but nvcc was not found (set CUDA_HOME)")
        return True
    return found and Path("/proc/driver/nvidia/version").exists()


class BuildExt(build_ext):
    """``build_ext`` that first compiles the CUDA sources with nvcc when CUDA is wanted."""

    def build_extension(self, ext: Extension) -> None:
        cuda_sources = sorted((ROOT / "kernels").glob("*.cu"))
        if cuda_sources and cuda_wanted():
            try:
                self._add_cuda(ext, cuda_sources)
            except (subprocess.CalledProcessError, RuntimeError):
                if os.environ.get("NOL_FAST_BUILD_CUDA") == "1":
                    raise
                print("nol_fast: nvcc failed; building nol_fast._C without the CUDA kernels")
        super().build_extension(ext)

    def _add_cuda(self, ext: Extension, sources: list[Path]) -> None:
        """Compile ``sources`` to objects and link them into ``ext`` with the CUDA runtime."""
        nvcc = nvcc_path()
        home = cuda_home(nvcc)
        archs = os.environ.get("NOL_FAST_CUDA_ARCHS", "80;90").split(";")
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
        gencode.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
        out_dir = Path(self.build_temp) / "cuda"
        out_dir.mkdir(parents=True, exist_ok=True)
        objects = []
        for source in sources:
            obj = out_dir / (source.stem + ".o")
            command = [nvcc, "-std=c++17", "-O3", "-Xcompiler", "-fPIC", *gencode, "-c",
                       str(source), "-o", str(obj)]  # fmt: skip
            print(" ".join(command))
            subprocess.check_call(command)
            objects.append(str(obj))
        ext.extra_objects += objects
        ext.define_macros.append(("NOL_FAST_WITH_CUDA", "1"))
        ext.include_dirs.append(str(home / "include"))
        ext.library_dirs.append(str(home / "lib64"))
        ext.libraries += ["cudart_static", "dl", "rt", "pthread"]


def extensions() -> list[Extension]:
    if os.environ.get("NOL_FAST_BUILD_EXT", "1") == "0":
        return []
    import pybind11

    return [
        Extension(
            "nol_fast._C",
            sources=sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("*.cpp")),
            include_dirs=[pybind11.get_include(), "csrc"],
            # Headers hold the kernels' loops: an incremental build must notice their changes.
            depends=sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("*.h")),
            extra_compile_args=CXX_FLAGS,
            extra_link_args=["-fopenmp"],
            language="c++",
            # Without a compiler the package still installs and runs on its Python paths.
            optional=os.environ.get("NOL_FAST_BUILD_CUDA") != "1",
        )
    ]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
