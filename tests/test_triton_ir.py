"""The Triton kernels as the GPU compiler sees them: their sm_90 TTIR and PTX, built here.

Some defects of a kernel show only in its compiled form: an int32 multiply that wraps at
sizes the tests cannot allocate, or an approximate instruction that the interpreter (numpy,
IEEE throughout) never uses. Triton compiles for a GPU target without a GPU, so these tests
compile the kernels for sm_90 with the options their launchers use and read the IR.

The compilation runs in a subprocess: the other Triton tests switch on the interpreter for
this process, and interpreted kernels cannot be compiled.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="the Triton kernels need the triton package")

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json

    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from nol_fast.ops.triton import optim, spectral_conv

    def compiled(kernel, types, constexprs, options):
        signature = {name: "constexpr" if name in constexprs else types.get(name, "i32")
                     for name in kernel.arg_names}
        source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
        return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options).asm

    # Strides below 2**31 are passed as int32: the case where BLOCK_K * stride can wrap.
    spectral = compiled(
        spectral_conv._complex_mode_gemm_kernel,
        {"a_ptr": "*fp32", "b_ptr": "*fp32", "c_ptr": "*fp32", "kept_ptr": "*i32",
         "row_kept_ptr": "*i32"},
        {"CONJ_A": False, "CONJ_B": True, "BLOCK_M": 2, "BLOCK_P": 16, "BLOCK_Q": 16,
         "BLOCK_K": 16, "BLOCK_R": 4, "BLOCK_Z": 512},
        {"num_warps": 4},
    )
    optim_types = {"meta_ptr": "*i64", "chunk_ptr": "*i64", "coef_ptr": "*fp32",
                   "grad_scale_ptr": "*fp32", "found_inf_ptr": "*fp32",
                   "one_minus_beta1": "fp32", "beta2": "fp32", "one_minus_beta2": "fp32",
                   "eps": "fp32", "weight_decay": "fp32"}
    ptx = {}
    for name, p_dtype, adabound in (("adam", tl.float32, False), ("adabound", tl.bfloat16, True)):
        constexprs = {"P_DTYPE": p_dtype, "G_DTYPE": p_dtype, "ADABOUND": adabound,
                      "AMSGRAD": True, "MAXIMIZE": False, "DECOUPLED": False,
                      "HAS_GRAD_SCALE": True, "HAS_FOUND_INF": True, "ALIGN": 16,
                      "BLOCK": 4096}
        ptx[name] = compiled(optim._multi_tensor_step_kernel, optim_types, constexprs,
                             optim.COMPILE_OPTIONS)["ptx"]
    print(json.dumps({"spectral_ttir": spectral["ttir"], "optim_ptx": ptx}))
""")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    """The spectral kernel's TTIR and the optimizer kernel's PTX (Adam and AdaBound)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["TRITON_CACHE_DIR"] = str(tmp_path_factory.mktemp("triton-cache"))
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_spectral_kernel_steps_pointers_in_int64(compiled):
    """Every use of a stride is first widened to int64, so no offset product wraps.

    The k loop used to step its pointers by ``BLOCK_K * stride`` computed in int32
    (``arith.muli %stride_ak, %c16_i32 : i32``): from a stride of 2**27 floats on, for
    example the grad-weight pass of a 1024 x 1024 grid with 128 channels, it wrapped.
    """
    ttir = compiled["spectral_ttir"]
    body = ttir[ttir.index("tt.func"):]
    uses = [line.strip() for line in body.splitlines()[1:] if re.search(r"%stride_\w+\b", line)]
    assert {re.search(r"%(stride_\w+)", u).group(1) for u in uses} == {
        "stride_ap", "stride_ak", "stride_bk", "stride_bq", "stride_cp", "stride_cq"}
    bad = [u for u in uses if not re.search(r"= arith\.extsi %stride_\w+ : i32 to i64", u)]
    assert not bad, bad


@pytest.mark.parametrize("variant", ["adam", "adabound"])
def test_optimizer_kernel_rounds_every_operation(compiled, variant):
    """No approximate or flush-to-zero instruction, no contracted multiply-add.

    ``tl.sqrt`` compiles to ``sqrt.approx.ftz.f32``, which flushes a subnormal second moment
    to zero (with ``eps=0`` a tiny gradient then gives an infinite step), and ``/`` to the
    approximate ``div.full.f32``; the CUDA kernel and the reference round each operation.
    """
    ptx = compiled["optim_ptx"][variant]
    float_ops = set(re.findall(r"\b((?:sqrt|div|rcp|fma|mad|mul|add|sub)\.[\w.]*f32)\b", ptx))
    assert "sqrt.rn.f32" in float_ops and "div.rn.f32" in float_ops, float_ops
    bad = {op for op in float_ops if re.search(r"approx|ftz|full|^fma|^mad", op)}
    assert not bad, bad
