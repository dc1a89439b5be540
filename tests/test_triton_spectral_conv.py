"""The Triton spectral mixing kernels against a complex torch reference, on the CPU.

The kernels run under the Triton interpreter, which must be switched on before the kernels
are first imported; the module is skipped when Triton is missing or when the kernels were
already imported for the GPU in this process. Shapes are odd and small (the interpreter spends
tens of milliseconds on each program of these kernels) and cover 1-D to 3-D grids, negative
frequencies, output spectra larger than the input, a weight larger than the grid allows,
channel counts off the 16-wide tiles, several tiles and reduction steps per dim, and batches
of 1, 3 and 17; a property-based test draws whole problems for the backend (transforms and
kernels) against the reference backend.
"""

from __future__ import annotations

import pytest
import torch
from triton_interpreter import require_interpreter

require_interpreter()  # before triton, and the kernels, are first imported

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nol_fast.ops.spectral_conv import cuda, mode_index, reference  # noqa: E402
from nol_fast.ops.spectral_conv.modes import kept_shape  # noqa: E402
from nol_fast.ops.triton.spectral_conv import (  # noqa: E402
    spectral_mix_backward,
    spectral_mix_forward,
)

# name: (batch, in_channels, out_channels, input grid, output grid, n_modes)
CASES = {
    "1d": (3, 20, 12, (37,), (37,), (16,)),
    "1d_multi_tile": (17, 33, 18, (6,), (6,), (4,)),
    "2d_negative_freqs": (1, 3, 5, (30, 17), (30, 17), (8, 8)),
    "2d_superres": (3, 3, 5, (30, 17), (40, 24), (8, 8)),
    "2d_coarse_grid": (3, 3, 5, (6, 7), (6, 7), (8, 12)),
    "3d": (3, 3, 5, (12, 10, 9), (12, 10, 9), (4, 4, 4)),
    "3d_superres": (1, 3, 5, (12, 10, 9), (16, 12, 14), (4, 4, 4)),
}


def _spec(grid):
    return (*grid[:-1], grid[-1] // 2 + 1)


def _modes(case):
    """Index arrays, n_last and weight mode shape, with the layer's FFT-order convention."""
    _, _, _, grid, out_grid, n_modes = case
    in_index, out_index, w_index = [], [], []
    for m, size, out_size in zip(n_modes[:-1], grid[:-1], out_grid[:-1], strict=True):
        n_pos = min((m + 1) // 2, size // 2 + 1)
        n_neg = min(m // 2, size - n_pos)
        in_index.append([*range(n_pos), *range(size - n_neg, size)])
        out_index.append([*range(n_pos), *range(out_size - n_neg, out_size)])
        w_index.append([*range(n_pos), *range(m - n_neg, m)])
    as_int32 = [[torch.tensor(p, dtype=torch.int32) for p in idx]
                for idx in (in_index, out_index, w_index)]
    n_last = min(n_modes[-1] // 2 + 1, grid[-1] // 2 + 1)
    return (*as_int32, n_last, (*n_modes[:-1], n_modes[-1] // 2 + 1))


def _inputs(case, seed=0):
    """Complex x_ft (batch, in, *in_spec), weight (in, out, *kept), grad_out (batch, out, ...)."""
    batch, cin, cout, grid, out_grid, _ = case
    *_, kept = _modes(case)
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, dtype=torch.complex64, generator=g) for shape in
                 ((batch, cin, *_spec(grid)), (cin, cout, *kept), (batch, cout, *_spec(out_grid))))


def _gather(t, index, n_last):
    for d, idx in enumerate(index):
        t = t.index_select(2 + d, idx.long())
    return t[..., :n_last]


def _scatter(values, index, n_last, shape):
    out = values.new_zeros(shape)
    grids = torch.meshgrid(*[idx.long() for idx in index], torch.arange(n_last), indexing="ij")
    out[(slice(None), slice(None), *grids)] = values
    return out


def _reference(x, w, in_index, out_index, w_index, n_last, out_spec):
    y = torch.einsum("bi...,io...->bo...", _gather(x, in_index, n_last),
                     _gather(w, w_index, n_last))
    return _scatter(y, out_index, n_last, (*y.shape[:2], *out_spec))


def _reference_all(case, x, w, g):
    """Forward and (grad_x, grad_w) of the complex reference, by autograd."""
    in_index, out_index, w_index, n_last, _ = _modes(case)
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = _reference(x, w, in_index, out_index, w_index, n_last, g.shape[2:])
    grad_x, grad_w = torch.autograd.grad(y, (x, w), grad_outputs=g)
    return y.detach(), grad_x, grad_w


def _lowp_einsum(eq, a, b, dtype):
    """Complex einsum done by torch in ``dtype`` on real and imaginary parts."""
    ar, ai, br, bi = (t.to(dtype) for t in (a.real, a.imag, b.real, b.imag))
    re = torch.einsum(eq, ar, br) - torch.einsum(eq, ai, bi)
    im = torch.einsum(eq, ar, bi) + torch.einsum(eq, ai, br)
    return torch.complex(re.float(), im.float())


def _torch_lowp_all(case, x, w, g, dtype):
    """Forward and gradients computed by torch in ``dtype``, the baseline for its error."""
    in_index, out_index, w_index, n_last, _ = _modes(case)
    xg, wg, gg = (_gather(x, in_index, n_last), _gather(w, w_index, n_last),
                  _gather(g, out_index, n_last))
    y = _lowp_einsum("bi...,io...->bo...", xg, wg, dtype)
    grad_x = _lowp_einsum("bo...,io...->bi...", gg, wg.conj(), dtype)
    grad_w = _lowp_einsum("bi...,bo...->io...", xg.conj(), gg, dtype)
    return (_scatter(y, out_index, n_last, g.shape), _scatter(grad_x, in_index, n_last, x.shape),
            _scatter(grad_w, w_index, n_last, w.shape))


def _kernels_all(case, x, w, g, dtype=torch.float32, weight_dtype=torch.float32):
    """Forward and gradients from the kernels, as complex tensors."""
    in_index, out_index, w_index, n_last, _ = _modes(case)
    x_ft, weight, grad_ft = (torch.view_as_real(t).to(d)
                             for t, d in ((x, dtype), (w, weight_dtype), (g, dtype)))
    y = spectral_mix_forward(x_ft, weight, in_index, out_index, w_index, n_last, g.shape[2:])
    grad_x, grad_w = spectral_mix_backward(grad_ft, x_ft, weight, in_index, out_index, w_index,
                                           n_last, x.shape[2:])
    for t in (y, grad_x, grad_w):
        assert t.dtype == torch.float32 and t.shape[-1] == 2
    return tuple(torch.view_as_complex(t) for t in (y, grad_x, grad_w))


def _rounded(t, dtype):
    return torch.view_as_complex(torch.view_as_real(t).to(dtype).float())


@pytest.mark.parametrize("name", list(CASES))
def test_float32_matches_complex_reference(name):
    case = CASES[name]
    x, w, g = _inputs(case)
    for got, want in zip(_kernels_all(case, x, w, g), _reference_all(case, x, w, g), strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        # The zero-fill is exact: positions without a kept mode hold zeros, not leftovers.
        assert torch.equal(got[want == 0], want[want == 0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("weight_lowp", [False, True], ids=["weight_fp32", "weight_lowp"])
def test_reduced_precision_inputs(dtype, weight_lowp):
    case = CASES["2d_negative_freqs"]
    x, w, g = _inputs(case, seed=1)
    weight_dtype = dtype if weight_lowp else torch.float32
    got = _kernels_all(case, x, w, g, dtype, weight_dtype)
    # Upcast right after the load: exactly the float32 result on the rounded inputs.
    w_used = _rounded(w, dtype) if weight_lowp else w
    for a, b in zip(got, _reference_all(case, _rounded(x, dtype), w_used, _rounded(g, dtype)),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # Against the float32 reference, no worse than twice torch's own same-dtype computation.
    for a, want, base in zip(got, _reference_all(case, x, w, g),
                             _torch_lowp_all(case, x, w, g, dtype), strict=True):
        err = (a - want).abs().max() / want.abs().max()
        torch_err = (base - want).abs().max() / want.abs().max()
        assert err <= 2 * torch_err, (err, torch_err)


def test_non_contiguous_inputs():
    case = CASES["2d_superres"]
    x, w, g = _inputs(case)
    in_index, out_index, w_index, n_last, _ = _modes(case)
    # x_ft: (batch, in_channels, *spectrum, 2) with batch and channels swapped in memory
    x_ft = torch.view_as_real(x.transpose(0, 1).contiguous().transpose(0, 1))
    assert not x_ft.is_contiguous()
    y = spectral_mix_forward(x_ft, torch.view_as_real(w), in_index, out_index, w_index, n_last,
                             g.shape[2:])
    want = _reference(x, w, in_index, out_index, w_index, n_last, g.shape[2:])
    torch.testing.assert_close(torch.view_as_complex(y), want, rtol=1e-5, atol=1e-5)


def test_no_kept_modes_gives_zeros():
    x, w, g = _inputs(CASES["2d_coarse_grid"])
    x_ft, weight, grad_ft = (torch.view_as_real(t) for t in (x, w, g))
    empty = [torch.zeros(0, dtype=torch.int32)]
    outs = (spectral_mix_forward(x_ft, weight, empty, empty, empty, 3, g.shape[2:]),
            *spectral_mix_backward(grad_ft, x_ft, weight, empty, empty, empty, 0, x.shape[2:]))
    for got, like in zip(outs, (grad_ft, x_ft, weight), strict=True):
        assert torch.equal(got, torch.zeros_like(like))


def _bad_forward_args(change):
    case = CASES["2d_negative_freqs"]
    x, w, g = _inputs(case)
    in_index, out_index, w_index, n_last, _ = _modes(case)
    args = {"x_ft": torch.view_as_real(x), "weight": torch.view_as_real(w),
            "in_index": in_index, "out_index": out_index, "w_index": w_index,
            "n_last": n_last, "out_spec_shape": tuple(g.shape[2:])}
    args.update(change(args))
    return args


@pytest.mark.parametrize(("change", "error", "match"), [
    (lambda a: {"x_ft": torch.view_as_complex(a["x_ft"])}, TypeError, "view_as_real"),
    (lambda a: {"x_ft": a["x_ft"].double()}, TypeError, "float64"),
    (lambda a: {"weight": a["weight"][:2]}, ValueError, r"weight must have shape \(3,"),
    (lambda a: {"x_ft": a["x_ft"][..., :1]}, ValueError, "x_ft must have shape"),
    (lambda a: {"n_last": 10}, ValueError, r"n_last must be an int in \[0, 5\]"),
    (lambda a: {"out_spec_shape": (30,)}, ValueError, "out_spec_shape must be 2"),
    (lambda a: {"in_index": []}, ValueError, r"in_index must hold one index array .* got 0"),
    (lambda a: {"in_index": [a["in_index"][0].float()]}, TypeError, r"in_index\[0\]"),
    (lambda a: {"in_index": [torch.tensor([0, 1, 2, 3, 26, 27, 28, 30], dtype=torch.int32)]},
     ValueError, r"in_index\[0\] must hold distinct positions in \[0, 30\)"),
    (lambda a: {"out_index": [torch.tensor([0, 0, 2, 3, 26, 27, 28, 29], dtype=torch.int32)]},
     ValueError, r"out_index\[0\] must hold distinct"),
    (lambda a: {"w_index": [torch.arange(7, dtype=torch.int32)]}, ValueError, "one length"),
])
def test_forward_rejects_bad_arguments(change, error, match):
    with pytest.raises(error, match=match):
        spectral_mix_forward(**_bad_forward_args(change))


def test_backward_rejects_mismatched_shapes():
    case = CASES["1d"]
    x, w, g = _inputs(case)
    in_index, out_index, w_index, n_last, _ = _modes(case)
    x_ft, weight, grad_ft = (torch.view_as_real(t) for t in (x, w, g))
    with pytest.raises(ValueError, match=r"grad_out_ft must have shape \(3, 12,"):
        spectral_mix_backward(grad_ft[:, :4], x_ft, weight, in_index, out_index, w_index,
                              n_last, x.shape[2:])
    with pytest.raises(ValueError, match="in_spec_shape must match"):
        spectral_mix_backward(grad_ft, x_ft, weight, in_index, out_index, w_index, n_last, (20,))


@st.composite
def composition_problems(draw):
    """``(in_grid, out_grid, n_modes, batch, in_channels, out_channels, seed)``, small."""
    n_dims = draw(st.integers(1, 3))
    size = st.integers(1, {1: 20, 2: 9, 3: 5}[n_dims])
    in_grid = tuple(draw(size) for _ in range(n_dims))
    out_grid = tuple(draw(st.sampled_from([n, draw(size)])) for n in in_grid)
    n_modes = tuple(draw(st.integers(1, n + 2)) for n in in_grid)
    return (in_grid, out_grid, n_modes, draw(st.integers(1, 3)), draw(st.integers(1, 18)),
            draw(st.integers(1, 18)), draw(st.integers(0, 2**16)))


# The interpreter spends tens of milliseconds per program: a few drawn problems only.
@settings(max_examples=12)
@given(problem=composition_problems())
def test_triton_backend_matches_the_reference_backend(problem):
    """The Triton backend (cuFFT's stand-in torch.fft around the kernels) on CPU tensors."""
    in_grid, out_grid, n_modes, batch, cin, cout, seed = problem
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, *in_grid, generator=g)
    w = torch.randn(cin, cout, *kept_shape(n_modes), generator=g, dtype=torch.complex64)
    grad_y = torch.randn(batch, cout, *out_grid, generator=g)
    index = mode_index(n_modes, in_grid, out_grid)
    y, x_modes = cuda.cuda_forward(x, w, index, out_grid)
    y_ref, x_modes_ref = reference.reference_forward(x, w, index, out_grid)
    got = (y, x_modes, *cuda.cuda_backward(grad_y, x_modes, w, index, in_grid))
    want = (y_ref, x_modes_ref,
            *reference.reference_backward(grad_y, x_modes_ref, w, index, in_grid))
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        scale = float(b.abs().max()) if b.numel() else 0.0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale + 1e-30)
