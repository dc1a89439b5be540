"""Build script for the optional compiled extension ``nol_fast._C``.

Metadata lives in pyproject.toml. This file adds the extension:

- C++ CPU kernels from ``csrc/*.cpp`` are built whenever there are sources and torch is
  importable at build time (``pip install --no-build-isolation``, since the extension must be
  compiled against the torch it runs with);
- CUDA kernels from ``kernels/*.cu`` are added only when torch has CUDA and ``nvcc`` is found;
- ``NOL_FAST_BUILD_EXT=0`` skips the extension.

Installation never fails for lack of a compiler or of sources: the package then runs on its
reference and Triton paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent


def extension_modules() -> tuple[list, dict]:
    if os.environ.get("NOL_FAST_BUILD_EXT", "1") == "0":
        return [], {}
    cpp_sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("*.cpp"))
    if not cpp_sources:
        return [], {}
    try:
        from torch.utils import cpp_extension
    except ImportError:
        print("nol_fast: torch is not importable at build time; skipping nol_fast._C")
        return [], {}
    import torch

    cuda_sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "kernels").glob("*.cu"))
    use_cuda = bool(cuda_sources) and torch.version.cuda is not None
    use_cuda = use_cuda and cpp_extension.CUDA_HOME is not None
    args = {"cxx": ["-O3", "-fopenmp"]}
    if use_cuda:
        args["nvcc"] = ["-O3", "--use_fast_math"]
        ext = cpp_extension.CUDAExtension(
            "nol_fast._C", cpp_sources + cuda_sources, extra_compile_args=args,
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = cpp_extension.CppExtension(
            "nol_fast._C", cpp_sources, extra_compile_args=args, extra_link_args=["-fopenmp"]
        )
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extension_modules()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
