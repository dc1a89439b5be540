"""Loading ``nol_fast._C``: its build record, and the fallback when it is missing or broken.

The fallback tests run in a fresh interpreter, since the extension is loaded once per process.
There, an import hook stands in for the two ways an installation can lack the extension: a
file the dynamic loader rejects (as a wheel built for a newer glibc is rejected), and no file
at all (an install without a compiler, or ``NOL_FAST_BUILD_EXT=0``).
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nol_fast
from nol_fast.cli.main import main
from nol_fast.ops import extension
from tests.conftest import require_extension

# Runs in a fresh interpreter after the import hook is installed: loads the extension through
# the optimizers, warns as the package does, trains a few AdamW steps on the automatic backend
# against torch.optim.AdamW, and prints what it saw as JSON.
PROBE = """
import contextlib, io, json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import torch
    from nol_fast.cli.main import main
    from nol_fast.optim import FusedAdamW, multi_tensor
    from nol_fast.ops import extension
    import nol_fast.ops.optim_step.cpu  # a second importer of the extension
params = [torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
oracle = [p.detach().clone().requires_grad_() for p in params]
ours, theirs = FusedAdamW(params, lr=1e-2), torch.optim.AdamW(oracle, lr=1e-2)
for _ in range(5):
    for a, b in zip(params, oracle):
        a.grad = b.grad = torch.sin(a.detach()) + 1
    ours.step()
    theirs.step()
for a, b in zip(params, oracle):
    torch.testing.assert_close(a, b)
info = io.StringIO()
with contextlib.redirect_stdout(info):
    main(["info"])
print(json.dumps({
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    "backend": multi_tensor.resolve_backend(None, torch.device("cpu")),
    "missing": extension.missing(),
    "info": info.getvalue(),
}))
"""


def _probe(hook: str) -> dict:
    """Run ``hook`` then :data:`PROBE` in a fresh interpreter; return what the probe saw."""
    script = textwrap.dedent(hook) + PROBE
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_a_broken_extension_warns_once_and_training_falls_back(tmp_path: Path) -> None:
    broken = tmp_path / f"_C{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    broken.write_bytes(b"\x7fELF but not really a shared object")
    # The dynamic loader's own reason, asked independently.
    with pytest.raises(OSError) as loader:
        ctypes.CDLL(str(broken))
    reason = str(loader.value).split(": ")[-1]
    seen = _probe(f"""
        import importlib.abc, importlib.machinery, importlib.util, sys

        class BrokenExtension(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name != "nol_fast._C":
                    return None
                loader = importlib.machinery.ExtensionFileLoader(name, {str(broken)!r})
                return importlib.util.spec_from_file_location(name, {str(broken)!r},
                                                              loader=loader)

        sys.meta_path.insert(0, BrokenExtension())
    """)
    assert len(seen["warnings"]) == 1, seen["warnings"]
    warning = seen["warnings"][0]
    assert warning.startswith("RuntimeWarning: nol_fast._C cannot be loaded: ")
    assert reason in warning and "reference and Triton backends" in warning
    assert seen["backend"] == "reference"
    assert seen["missing"].startswith("nol_fast._C cannot be loaded: ")
    assert reason in seen["missing"]
    assert f"compiled extension: {seen['missing']}; the ops run on" in seen["info"]
    assert f"cpu (unavailable: {seen['missing']})" in seen["info"]


def test_a_missing_extension_is_reported_without_a_warning() -> None:
    seen = _probe("""
        import importlib.abc, sys

        class NotBuilt(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "nol_fast._C":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NotBuilt())
    """)
    assert seen["warnings"] == []
    assert seen["backend"] == "reference"
    assert seen["missing"].startswith("nol_fast._C is not built")
    assert f"compiled extension: {seen['missing']}" in seen["info"]


def test_build_record_of_the_loaded_extension(capsys: pytest.CaptureFixture[str]) -> None:
    require_extension()
    info = extension.build_info()
    assert info["extension"] == "loaded"
    # Built from this source: the package version, with or without a local label.
    assert info["version"].split("+")[0] == nol_fast.__version__
    assert (info["cuda"] is not None) is extension.EXTENSION.has_cuda
    assert (info["cuda_archs"] != "") is extension.EXTENSION.has_cuda
    assert main(["info"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1] == f"compiled extension: {extension.build_summary()}"
    assert printed[1].startswith(
        f"compiled extension: nol_fast._C loaded: built as nol-fast {info['version']} by "
        f"{info['compiler']}; CPU kernels"
    )
