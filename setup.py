"""Build script for the compiled extension ``nol_fast._C``.

Metadata lives in pyproject.toml. This file adds the version and the extension, built from

- the C++ sources in ``csrc/`` (CPU kernels and the pybind11 module), always;
- the CUDA sources in ``kernels/``, compiled with ``nvcc`` and linked in, when CUDA is enabled.

The kernels take tensors as addresses and sizes, so the extension includes no torch headers:
it builds without torch (pip's isolated build works) and runs with any torch version.

The extension records how it was built (the package version, the compiler, and with CUDA the
runtime version and the architectures) in ``nol_fast._C.build_info``; ``nol-fast info`` prints
it. See docs/building-wheels.md for wheels.

Environment switches
--------------------
``NOL_FAST_BUILD_EXT=1|0``
    ``0`` builds no extension; the package then runs on its reference and Triton paths.
``NOL_FAST_BUILD_CUDA=auto|1|0``
    ``auto`` (default) adds the CUDA kernels when ``nvcc`` is found and an NVIDIA driver is
    loaded; ``1`` requires them; ``0`` leaves them out.
``NOL_FAST_CUDA_ARCHS``
    Semicolon-separated compute capabilities to build for (default ``80;90``), such as
    ``80;90;100`` or ``90a``; PTX of the last is embedded for newer GPUs.
``NOL_FAST_LOCAL_VERSION``
    The local version label appended to the version (``cu130`` gives ``0.1.0+cu130``). Default:
    ``cu<major><minor>`` of ``nvcc`` when ``NOL_FAST_BUILD_CUDA=1``, else none; set it empty
    for none.
``MAX_JOBS``
    Parallel compile jobs, for the C++ sources and for ``nvcc --threads`` (default: one per
    CPU core).

The extension is optional: when no C++ compiler (or OpenMP) is available, installation goes on
without it and says so.
"""

from __future__ import annotations

import ast
import os
import re
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
DEFAULT_CUDA_ARCHS = "80;90"
# A compute capability as nvcc spells it after sm_/compute_: 80, 90a, 100f.
ARCH_PATTERN = re.compile(r"\d{2,3}[af]?")
# A normalised PEP 440 local version label: cu130, cu130.torch213.
LOCAL_VERSION_PATTERN = re.compile(r"[a-z0-9]+(\.[a-z0-9]+)*")


def switch(name: str, default: str, accepted: tuple[str, ...]) -> str:
    """The value of the environment variable ``name``, checked against ``accepted``."""
    value = os.environ.get(name, default)
    if value not in accepted:
        raise RuntimeError(f"{name}={value!r} is not understood; use one of: {', '.join(accepted)}")
    return value


def base_version() -> str:
    """``__version__`` of ``nol_fast/__init__.py``, read without importing the package."""
    tree = ast.parse((ROOT / "nol_fast" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__version__" for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise RuntimeError("nol_fast/__init__.py does not assign __version__")


def cuda_mode() -> str:
    """``NOL_FAST_BUILD_CUDA``: ``auto`` (the default), ``1`` or ``0``."""
    return switch("NOL_FAST_BUILD_CUDA", "auto", ("auto", "1", "0"))


def nvcc_path() -> str | None:
    """``nvcc`` from ``$CUDA_HOME/bin`` or the ``PATH``."""
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home and (Path(cuda_home) / "bin" / "nvcc").exists():
        return str(Path(cuda_home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def required_nvcc() -> str:
    """``nvcc``, which ``NOL_FAST_BUILD_CUDA=1`` requires."""
    nvcc = nvcc_path()
    if nvcc is None:
        raise RuntimeError("NOL_FAST_BUILD_CUDA=1 but nvcc was not found (set CUDA_HOME)")
    return nvcc


def nvcc_release(nvcc: str) -> tuple[int, int]:
    """(major, minor) of the CUDA toolkit of ``nvcc``, from ``nvcc --version``."""
    output = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"release (\d+)\.(\d+)", output)
    if match is None:
        raise RuntimeError(f"cannot read the CUDA release from '{nvcc} --version':\n{output}")
    return int(match.group(1)), int(match.group(2))


def local_version() -> str:
    """The local version label (see ``NOL_FAST_LOCAL_VERSION``), or ``''`` for none."""
    label = os.environ.get("NOL_FAST_LOCAL_VERSION")
    if label is None:
        if cuda_mode() != "1":
            return ""
        major, minor = nvcc_release(required_nvcc())
        return f"cu{major}{minor}"
    if label and not LOCAL_VERSION_PATTERN.fullmatch(label):
        raise RuntimeError(
            f"NOL_FAST_LOCAL_VERSION={label!r} is not a local version label; use lower-case "
            "letters and digits in dot-separated parts, such as 'cu130' or 'cu130.torch213'"
        )
    return label


def version() -> str:
    """The package version with its local label: ``0.1.0`` or ``0.1.0+cu130``."""
    label = local_version()
    return f"{base_version()}+{label}" if label else base_version()


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
    mode = cuda_mode()
    if mode == "1":
        required_nvcc()
        return True
    return (mode == "auto" and nvcc_path() is not None
            and Path("/proc/driver/nvidia/version").exists())


def cuda_archs() -> list[str]:
    """The compute capabilities of ``NOL_FAST_CUDA_ARCHS``, checked."""
    value = os.environ.get("NOL_FAST_CUDA_ARCHS", DEFAULT_CUDA_ARCHS)
    archs = [arch for arch in re.split(r"[;,\s]+", value) if arch]
    bad = [arch for arch in archs if not ARCH_PATTERN.fullmatch(arch)]
    if not archs or bad:
        raise RuntimeError(
            f"NOL_FAST_CUDA_ARCHS={value!r}: expected compute capabilities as nvcc writes them "
            "after sm_, separated by ';', such as '80;90' or '90a;100'"
        )
    return archs


def max_jobs() -> int:
    """Parallel compile jobs from ``MAX_JOBS``; 0 (the default) means one per CPU core."""
    value = os.environ.get("MAX_JOBS", "0")
    if not value.isdigit():
        raise RuntimeError(f"MAX_JOBS={value!r} must be a whole number (0: one per CPU core)")
    return int(value)


class BuildExt(build_ext):
    """``build_ext`` that compiles the C++ sources in parallel and, when CUDA is wanted, first
    compiles the CUDA sources with nvcc."""

    def build_extension(self, ext: Extension) -> None:
        from pybind11.setup_helpers import ParallelCompile

        cuda_sources = sorted((ROOT / "kernels").glob("*.cu"))
        if cuda_sources and cuda_wanted():
            try:
                self._add_cuda(ext, cuda_sources)
            except (subprocess.CalledProcessError, RuntimeError):
                if cuda_mode() == "1":
                    raise
                print("nol_fast: nvcc failed; building nol_fast._C without the CUDA kernels")
        ext.depends.append(self._settings_stamp(ext))
        with ParallelCompile(default=max_jobs()):
            super().build_extension(ext)

    def _settings_stamp(self, ext: Extension) -> str:
        """A file holding the settings that come from the environment (version, CUDA objects
        and macros), rewritten only when they change.

        The extension depends on it: file times do not see the switches, and a build directory
        left by an earlier build would otherwise pass for up to date (giving, say, a CUDA wheel
        the CPU-only extension of the build before).
        """
        stamp = Path(self.build_temp) / "nol_fast_settings.txt"
        settings = repr((ext.define_macros, ext.extra_objects, ext.libraries))
        if not stamp.is_file() or stamp.read_text() != settings:
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(settings)
        return str(stamp)

    def _add_cuda(self, ext: Extension, sources: list[Path]) -> None:
        """Compile ``sources`` to objects and link them into ``ext`` with the CUDA runtime."""
        nvcc = nvcc_path()
        home = cuda_home(nvcc)
        archs = cuda_archs()
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
        gencode.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
        out_dir = Path(self.build_temp) / "cuda"
        out_dir.mkdir(parents=True, exist_ok=True)
        objects = []
        for source in sources:
            obj = out_dir / (source.stem + ".o")
            # --threads compiles the architectures of one source in parallel.
            command = [nvcc, "-std=c++17", "-O3", "-Xcompiler", "-fPIC", *gencode,
                       f"--threads={max_jobs()}", "-c", str(source), "-o", str(obj)]  # fmt: skip
            print(" ".join(command))
            subprocess.check_call(command)
            objects.append(str(obj))
        ext.extra_objects += objects
        ext.depends += [str(source) for source in sources]  # a changed kernel relinks
        ext.define_macros += [("NOL_FAST_WITH_CUDA", "1"),
                              ("NOL_FAST_CUDA_ARCHS", f'"{";".join(archs)}"')]  # fmt: skip
        ext.include_dirs.append(str(home / "include"))
        ext.library_dirs.append(str(home / "lib64"))
        ext.libraries += ["cudart_static", "dl", "rt", "pthread"]


def extensions(package_version: str) -> list[Extension]:
    if switch("NOL_FAST_BUILD_EXT", "1", ("1", "0")) == "0":
        if cuda_mode() == "1":
            raise RuntimeError("NOL_FAST_BUILD_CUDA=1 asks for the CUDA kernels, but "
                               "NOL_FAST_BUILD_EXT=0 builds no extension to put them in")
        return []
    import pybind11

    return [
        Extension(
            "nol_fast._C",
            sources=sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("*.cpp")),
            include_dirs=[pybind11.get_include(), "csrc"],
            # Headers hold the kernels' loops: an incremental build must notice their changes.
            depends=sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("*.h")),
            define_macros=[("NOL_FAST_VERSION", f'"{package_version}"')],
            extra_compile_args=CXX_FLAGS,
            extra_link_args=["-fopenmp"],
            language="c++",
            # Without a compiler the package still installs and runs on its Python paths.
            optional=cuda_mode() != "1",
        )
    ]


VERSION = version()
setup(version=VERSION, ext_modules=extensions(VERSION), cmdclass={"build_ext": BuildExt})
