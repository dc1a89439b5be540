"""Running the Triton kernels on CPU tensors under Triton's interpreter, for one test module.

The interpreter is chosen when triton and the kernels are first imported, so a module that tests
the kernels on the CPU calls :func:`require_interpreter` before it imports them. The module is
skipped when triton is missing, or when the kernels were already imported for the GPU in this
process (run the file in its own pytest process then).

The switch is an environment variable, which stays set for the rest of the session; the
autouse fixture :func:`conftest.triton_interpreter_scope` gives every other module's tests the
value the session started with, so that they see Triton as a user without the interpreter does.
"""

from __future__ import annotations

import os
import sys

import pytest

VARIABLE = "TRITON_INTERPRET"
#: The variable's value when the session started (None: unset).
ORIGINAL = os.environ.get(VARIABLE)
#: Names of the test modules that switched the interpreter on.
MODULES: set[str] = set()


def require_interpreter() -> None:
    """Switch Triton to its interpreter, or skip the calling module where that cannot work."""
    MODULES.add(sys._getframe(1).f_globals["__name__"])
    os.environ[VARIABLE] = "1"
    pytest.importorskip("triton", reason="the Triton kernels need the triton package")
    from nol_fast.ops import triton as kernels

    if not kernels.INTERPRETED:
        pytest.skip(
            "nol_fast.ops.triton was imported for the GPU before TRITON_INTERPRET=1 was set; "
            "run this file in its own pytest process to test the kernels on the CPU",
            allow_module_level=True,
        )
