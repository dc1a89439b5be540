"""The CPU spectral convolution's channel mixing kernel against a complex einsum in float64.

Odd batch sizes and channel counts (past and short of the kernel's blocks of 8 samples, 4
outputs and 16 modes), weights that hold more modes than are kept (modes that are not one run),
few modes and many samples (the batched-GEMM path), both layouts, every storage dtype and one
or two threads; forward and both gradients.
"""

from __future__ import annotations

import math

import pytest
import torch

from nol_fast.ops.spectral_conv import mixing
from nol_fast.ops.spectral_conv.mixing import mix_modes, mix_modes_backward, spectrum_shape
from nol_fast.ops.spectral_conv.modes import kept_shape, mode_index
from tests.conftest import require_extension


@pytest.fixture(autouse=True)
def _extension():
    require_extension()


def as_complex(spectrum, channels_last):
    """``(batch, modes, channels)`` complex float64 from either real-part layout."""
    parts = spectrum.double() if channels_last else spectrum.double().permute(0, 2, 3, 1)
    return torch.complex(parts[:, 0], parts[:, 1])


def from_complex(z, channels_last, dtype):
    parts = torch.stack((z.real, z.imag), dim=1)  # (batch, 2, modes, channels)
    return (parts if channels_last else parts.permute(0, 3, 1, 2)).to(dtype).contiguous()


def kept_weight(weight, index):
    """``(in, out, modes)``: the weight's entries of the kept modes, in kept order."""
    w = weight
    for d, kept in enumerate(index.w_index):
        w = w.index_select(2 + d, torch.tensor(kept))
    w = w[..., :index.n_last]
    return w.reshape(*w.shape[:2], -1)


# (batch, in, out, n_modes, grid): the grid clips the modes of the fifth and last cases below
# n_modes; the last two have fewer modes than half their samples, which a batched GEMM mixes
SHAPES = [(1, 1, 1, (4,), (16,)), (3, 5, 7, (10, 6), (20, 12)), (9, 17, 3, (33,), (64,)),
          (17, 4, 18, (6, 5, 4), (12, 10, 8)), (2, 3, 6, (12, 12), (7, 9)),
          (33, 5, 3, (8,), (32,)), (41, 3, 4, (6, 6), (5, 7))]
# (rtol, atol) of the spectra: bfloat16 results are their float32 values rounded once (2^-9)
SPECTRUM_TOLERANCE = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-5),
                      torch.bfloat16: (2.0 ** -8, 1e-5)}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}x{s[2]}-{s[3]}")
def test_mode_mixing_matches_einsum(shape, channels_last, dtype, threads):
    check_against_einsum(shape, channels_last, dtype, threads)


@pytest.mark.parametrize("channels_last", [True, False])
def test_mode_mixing_without_the_extension(monkeypatch, channels_last):
    # without nol_fast._C every mixing takes the batched GEMM, here on a shape the kernel takes
    monkeypatch.setattr(mixing, "EXTENSION", None)
    check_against_einsum(SHAPES[3], channels_last, torch.float32, 2)


def check_against_einsum(shape, channels_last, dtype, threads):
    batch, in_ch, out_ch, n_modes, grid = shape
    index = mode_index(n_modes, grid)
    n_kept = math.prod(index.kept)
    g = torch.Generator().manual_seed(0)
    real = torch.float64 if dtype == torch.float64 else torch.float32
    weight = torch.randn(in_ch, out_ch, *kept_shape(n_modes), dtype=real.to_complex(),
                         generator=g)
    x = torch.randn(spectrum_shape(batch, in_ch, n_kept, channels_last), generator=g).to(dtype)
    grad_y = torch.randn(spectrum_shape(batch, out_ch, n_kept, channels_last),
                         generator=g).to(dtype)
    w = kept_weight(weight.to(torch.complex128), index)  # (in, out, modes)
    xc, gc = as_complex(x, channels_last), as_complex(grad_y, channels_last)
    y_want = torch.einsum("bmi,iom->bmo", xc, w)
    gx_want = torch.einsum("bmo,iom->bmi", gc, w.conj())
    gw_want = torch.zeros(weight.shape, dtype=torch.complex128)
    gw_kept = torch.einsum("bmi,bmo->iom", xc.conj(), gc)
    flat = gw_want.view(in_ch, out_ch, -1)
    offsets = kept_weight(torch.arange(math.prod(weight.shape[2:])).view(1, 1, *weight.shape[2:]),
                          index)[0, 0]
    flat[:, :, offsets] = gw_kept

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = mix_modes(x, weight, index, channels_last)
        gx, gw = mix_modes_backward(grad_y, x, weight, index, channels_last)
    finally:
        torch.set_num_threads(previous)

    assert y.dtype == gx.dtype == dtype and gw.dtype == weight.dtype
    rtol, atol = SPECTRUM_TOLERANCE[dtype]
    torch.testing.assert_close(as_complex(y, channels_last), y_want, rtol=rtol, atol=atol)
    torch.testing.assert_close(as_complex(gx, channels_last), gx_want, rtol=rtol, atol=atol)
    # the weight gradient stays in the weight's precision
    exact = dtype == torch.float64
    torch.testing.assert_close(gw.to(torch.complex128), gw_want, rtol=1e-12 if exact else 1e-5,
                               atol=1e-12 if exact else 1e-5)


def test_mode_mixing_rejects_mismatched_dtypes():
    index = mode_index((4, 4), (8, 8))
    weight = torch.randn(3, 2, 4, 3, dtype=torch.complex128)
    with pytest.raises(ValueError, match="needs a contiguous torch.complex64 weight"):
        mix_modes(torch.randn(1, 2, 12, 3), weight, index, True)
    with pytest.raises(ValueError, match="do not fit 12 modes"):
        mix_modes_backward(torch.randn(1, 2, 12, 2), torch.randn(1, 2, 11, 3),
                           weight.to(torch.complex64), index, True)
