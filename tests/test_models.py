"""Tests of nol_fast.models: SpectralConv against a naive DFT, FNO, the model registry."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nol_fast.config import Section
from nol_fast.data import generate_heat
from nol_fast.models import (
    FNO,
    NeuralOperatorBase,
    SpectralConv,
    available_models,
    create_model,
    register_model,
)

# --------------------------------------------------------------------------- naive oracle


def kept_frequencies(m: int, last: bool) -> list[tuple[int, int]]:
    """(frequency, weight index) pairs kept along one dim, from the documented convention."""
    if last:
        return [(j, j) for j in range(m // 2 + 1)]
    n_pos = (m + 1) // 2
    return [(j if j < n_pos else j - m, j) for j in range(m)]


def naive_spectral_conv(x, weight, bias, freqs_per_dim):
    """SpectralConv written as explicit sums over exp(-2 pi i k n / N), in complex128.

    ``freqs_per_dim[d]`` lists the (frequency, weight index) pairs used along dim ``d``.
    """
    grid = x.shape[2:]
    d = len(grid)
    letters = "xyz"[:d]
    spec = x.to(torch.complex128)
    w = weight.to(torch.complex128)
    # Forward DFT, one dim at a time, onto the kept frequencies (norm='forward': 1/N).
    for dim, (n, pairs) in enumerate(zip(grid, freqs_per_dim, strict=True)):
        k = torch.tensor([f for f, _ in pairs], dtype=torch.float64)
        pos = torch.arange(n, dtype=torch.float64)
        matrix = torch.exp(-2j * math.pi * torch.outer(k, pos) / n) / n  # (k, n)
        spec = torch.movedim(torch.tensordot(spec, matrix, dims=([2 + dim], [1])), -1, 2 + dim)
        index = torch.tensor([j for _, j in pairs])
        w = torch.index_select(w, 2 + dim, index)
    out = torch.einsum(f"bi{letters},io{letters}->bo{letters}", spec, w)
    # Inverse: complex sums over the non-last dims ...
    for dim in range(d - 1):
        n, pairs = grid[dim], freqs_per_dim[dim]
        k = torch.tensor([f for f, _ in pairs], dtype=torch.float64)
        pos = torch.arange(n, dtype=torch.float64)
        matrix = torch.exp(2j * math.pi * torch.outer(pos, k) / n)  # (n, k)
        out = torch.movedim(torch.tensordot(out, matrix, dims=([2 + dim], [1])), -1, 2 + dim)
    # ... and the real inverse over the last dim: c_k Re(Z_k e^{2 pi i k n / N}).
    n = grid[-1]
    k = torch.tensor([f for f, _ in freqs_per_dim[-1]], dtype=torch.float64)
    weights = torch.where((k == 0) | (2 * k == n), 1.0, 2.0)
    pos = torch.arange(n, dtype=torch.float64)
    phase = torch.exp(2j * math.pi * torch.outer(k, pos) / n) * weights[:, None]  # (k, n)
    y = torch.real(torch.tensordot(out, phase, dims=([-1], [0])))
    if bias is not None:
        y = y + bias.view(-1, *([1] * d))
    return y


def double_conv(in_channels, out_channels, n_modes, bias=True, seed=0):
    torch.manual_seed(seed)
    conv = SpectralConv(in_channels, out_channels, n_modes, bias=bias).double()
    conv.weight = nn.Parameter(conv.weight.detach().to(torch.complex128))
    if bias:
        conv.bias = nn.Parameter(torch.randn(out_channels, dtype=torch.float64))
    return conv


ORACLE_CASES = [
    ((37,), (10,)),
    ((30, 17), (8, 6)),
    ((12, 10, 9), (6, 5, 4)),
]


@pytest.mark.parametrize(("grid", "n_modes"), ORACLE_CASES)
def test_spectral_conv_matches_naive_dft(grid, n_modes):
    conv = double_conv(3, 2, n_modes)
    freqs = [kept_frequencies(m, i == len(n_modes) - 1) for i, m in enumerate(n_modes)]
    x = torch.randn(2, 3, *grid, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    w_ref = conv.weight.detach().clone().requires_grad_(True)
    b_ref = conv.bias.detach().clone().requires_grad_(True)

    y = conv(x)
    y_ref = naive_spectral_conv(x_ref, w_ref, b_ref, freqs)
    assert y.shape == (2, 2, *grid)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)

    probe = torch.randn_like(y)
    (y * probe).sum().backward()
    (y_ref * probe).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(conv.weight.grad, w_ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(conv.bias.grad, b_ref.grad, rtol=1e-10, atol=1e-12)


def test_spectral_conv_clips_modes_on_coarse_grid():
    # n_modes (16, 16) on a 7 x 5 grid: every frequency of the grid is kept.
    conv = double_conv(2, 2, (16, 16), bias=False)
    freqs = [[(f, f % 16) for f in (0, 1, 2, 3, -3, -2, -1)], [(0, 0), (1, 1), (2, 2)]]
    x = torch.randn(3, 2, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(conv(x), naive_spectral_conv(x, conv.weight, None, freqs),
                               rtol=1e-10, atol=1e-12)
    # Even coarse grids and a single point work too.
    for grid in [(6, 4), (1, 1), (2, 3)]:
        y = conv(torch.randn(1, 2, *grid, dtype=torch.float64))
        assert y.shape == (1, 2, *grid) and torch.isfinite(y).all()


def test_spectral_conv_gradcheck():
    conv = double_conv(2, 2, (4, 3))
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    w = conv.weight.detach().clone().requires_grad_(True)
    b = conv.bias.detach().clone().requires_grad_(True)

    def fn(x, w, b):
        return torch.func.functional_call(conv, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(fn, (x, w, b))


@pytest.mark.parametrize(("grid", "n_modes"), ORACLE_CASES)
def test_spectral_conv_is_linear_and_shift_equivariant(grid, n_modes):
    conv = double_conv(2, 3, n_modes, bias=False)
    x, z = torch.randn(2, 2, 2, *grid, dtype=torch.float64)
    torch.testing.assert_close(conv(2.5 * x - 0.7 * z), 2.5 * conv(x) - 0.7 * conv(z))
    dims = tuple(range(2, 2 + len(grid)))
    shifts = tuple(3 + i for i in range(len(grid)))
    torch.testing.assert_close(conv(torch.roll(x, shifts, dims)),
                               torch.roll(conv(x), shifts, dims))


@pytest.mark.parametrize(("grid", "n_modes"), ORACLE_CASES)
def test_spectral_conv_output_has_no_energy_above_kept_modes(grid, n_modes):
    conv = double_conv(2, 2, n_modes, bias=False)
    y = conv(torch.randn(2, 2, *grid, dtype=torch.float64))
    spectrum = torch.fft.rfftn(y, dim=tuple(range(2, y.dim())))
    kept = torch.zeros(spectrum.shape[2:], dtype=torch.bool)
    index = [torch.tensor([f % n for f, _ in kept_frequencies(m, i == len(grid) - 1)])
             for i, (m, n) in enumerate(zip(n_modes, grid, strict=True))]
    kept[torch.meshgrid(*index, indexing="ij")] = True
    # The plane of last-dim frequency 0 is Hermitian: frequency k there equals conj(-k).
    if len(grid) > 1:
        plane = kept[..., 0]
        dims = tuple(range(plane.dim()))
        kept[..., 0] |= torch.roll(torch.flip(plane, dims), (1,) * plane.dim(), dims)
    assert spectrum[..., kept].abs().max() > 1e-3
    assert spectrum[..., ~kept].abs().max() < 1e-10


def test_spectral_conv_weight_layout_and_init():
    conv = SpectralConv(16, 48, (12, 7, 9))
    assert conv.weight.shape == (16, 48, 12, 7, 5)
    assert conv.weight.is_complex() and conv.bias.shape == (48,)
    std = math.sqrt(1 / 64)
    assert abs(conv.weight.real.std().item() - std) < 0.05 * std
    assert abs(conv.weight.imag.std().item() - std) < 0.05 * std
    assert SpectralConv(2, 2, 8, bias=False).bias is None


def test_spectral_conv_dtypes_under_autocast():
    conv = SpectralConv(2, 2, (6, 6))
    x = torch.randn(2, 2, 12, 9)
    reference = conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), reference, rtol=2e-2, atol=2e-2)
    assert conv(x.bfloat16()).dtype == torch.bfloat16
    assert conv(x.double()).dtype == torch.float64


def test_spectral_conv_errors():
    conv = SpectralConv(2, 2, (4, 4))
    expected = r"\(batch, 2, \*grid\) with 2 grid dims, got \(1, 3, 8, 8\)"
    with pytest.raises(ValueError, match=expected):
        conv(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="n_modes"):
        SpectralConv(2, 2, (4, 4, 4, 4))
    with pytest.raises(ValueError, match="n_modes"):
        SpectralConv(2, 2, (4, 0))
    with pytest.warns(UserWarning, match="imaginary part"):
        conv.to(torch.float64)  # casts the complex weight to a real dtype
    with pytest.raises(TypeError, match="complex"):
        conv(torch.randn(1, 2, 8, 8, dtype=torch.float64))


# --------------------------------------------------------------------------------- FNO


@pytest.mark.parametrize(("n_modes", "grid"), [
    ((6,), (37,)),
    ((6, 6), (30, 17)),
    ((4, 4, 4), (12, 10, 9)),
])
def test_fno_output_shapes(n_modes, grid):
    model = FNO(n_modes, in_channels=3, out_channels=2, hidden_channels=8, n_layers=2)
    assert model.n_dims == len(grid)
    assert model(torch.randn(2, 3, *grid)).shape == (2, 2, *grid)


@pytest.mark.parametrize(("positional_embedding", "tolerance"), [(False, 1e-10), (True, 1e-2)])
def test_fno_resolution_invariance(positional_embedding, tolerance):
    torch.manual_seed(0)
    model = FNO((8, 8), hidden_channels=16, positional_embedding=positional_embedding).double()

    def smooth(n):  # a band-limited function sampled on an n x n grid
        axis = torch.arange(n, dtype=torch.float64) / n
        x, y = torch.meshgrid(axis, axis, indexing="ij")
        u = torch.sin(2 * math.pi * x) + 0.5 * torch.cos(2 * math.pi * (x + 2 * y))
        return u.view(1, 1, n, n)

    with torch.no_grad():
        coarse, fine = model(smooth(32)), model(smooth(48))
    # Points j / 16 lie on both grids.
    coarse, fine = coarse[..., ::2, ::2], fine[..., ::3, ::3]
    assert ((coarse - fine).norm() / fine.norm()).item() < tolerance


def test_fno_count_parameters_by_hand():
    model = FNO(n_modes=(4,), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    lifting = (2 * 8 + 8) + (8 * 4 + 4)        # (1 input + 1 coordinate) -> 8 -> 4
    spectral = 2 * (4 * 4 * 3) + 4             # complex weight (4, 4, 4 // 2 + 1), bias
    fno_skip = 4 * 4                           # linear, no bias
    channel_mlp = (4 * 2 + 2) + (2 * 4 + 4)    # 4 -> round(4 * 0.5) -> 4
    channel_mlp_skip = 4                       # soft-gating
    projection = (4 * 8 + 8) + (8 * 1 + 1)     # 4 -> 8 -> 1
    total = lifting + spectral + fno_skip + channel_mlp + channel_mlp_skip + projection
    assert model.count_parameters() == total == 251
    model.projection.requires_grad_(False)
    assert model.count_parameters() == total - projection
    assert model.count_parameters(trainable_only=False) == total


def test_fno_summary_and_input_checks():
    model = FNO((4, 4), in_channels=2, hidden_channels=4)
    summary = model.get_model_summary()
    assert summary == {
        "model_class": "FNO", "in_channels": 2, "out_channels": 1, "n_dims": 2,
        "n_parameters": model.count_parameters(trainable_only=False),
        "n_trainable_parameters": model.count_parameters(),
    }
    expected = r"FNO expects input of shape \(batch, 2, \*grid\) with 2 grid dims, got \(4, 1, 8, 8"
    with pytest.raises(ValueError, match=expected):
        model(torch.randn(4, 1, 8, 8))
    with pytest.raises(ValueError, match=r"got \(4, 2, 8\)"):
        model(torch.randn(4, 2, 8))
    with pytest.raises(ValueError, match="activation 'swish'.*gelu"):
        FNO((4, 4), activation="swish")
    with pytest.raises(ValueError, match="hidden_channels"):
        FNO((4, 4), hidden_channels=0)


def test_fno_under_autocast():
    model = FNO((4, 4), hidden_channels=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(torch.randn(2, 1, 16, 16))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_tiny_fno_overfits_heat_samples():
    torch.manual_seed(0)
    x, y = generate_heat(8, resolution=16, n_dims=2, seed=0)
    model = FNO((6, 6), hidden_channels=8, n_layers=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


# ---------------------------------------------------------------------------- registry


def test_create_model_names_and_aliases():
    assert {"fno", "fourier_neural_operator"} <= set(available_models())
    for name in ("fno", "fourier_neural_operator"):
        model = create_model(name, {"n_modes": [4, 4], "hidden_channels": 4})
        assert isinstance(model, FNO)
        assert model.model_config == {"model_type": "fno", "n_modes": [4, 4],
                                      "hidden_channels": 4}


def test_create_model_accepts_sections_and_ignores_model_type():
    section = Section(model_type="fno", n_modes=(6,), hidden_channels=4)
    for config in (section, section.__dict__, SimpleNamespace(**section.__dict__)):
        model = create_model("fno", config)
        assert model.n_modes == (6,) and model.hidden_channels == 4
        assert model.model_config == {"model_type": "fno", "n_modes": [6], "hidden_channels": 4}


def test_model_config_is_plain_data_that_rebuilds_the_model():
    model = create_model("fourier_neural_operator",
                         {"n_modes": (4, 4), "in_channels": 2, "activation": "tanh"})
    config = json.loads(json.dumps(model.model_config))
    assert config == model.model_config
    rebuilt = create_model(config["model_type"], config)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(rebuilt(x), model(x))
    assert model.get_model_summary()["model_config"] == config


def test_create_model_errors():
    with pytest.raises(ValueError) as err:
        create_model("fnox", {"n_modes": [4]})
    assert str(err.value).startswith("unknown model 'fnox'; choose one of: ")
    assert "fno, fourier_neural_operator" in str(err.value)
    with pytest.raises(TypeError, match=r"model 'fno' got unknown option\(s\) 'modes'; "
                                        r"accepted options: n_modes, in_channels"):
        create_model("fno", {"modes": [4]})
    with pytest.raises(TypeError, match=r"model 'fno' requires option\(s\) 'n_modes'"):
        create_model("fno", {})


def test_a_name_key_is_rejected_not_dropped():
    """``name: fnoo`` in a model section must not quietly build the default model."""
    section = Section(model_type="fno", name="fnoo", n_modes=(6,), hidden_channels=4)
    with pytest.raises(TypeError, match=r"model 'fno' got unknown option\(s\) 'name' \(the "
                                        r"model is chosen by 'model_type'\); accepted options"):
        create_model(section.model_type, section.__dict__)


def test_register_model():
    @register_model("test_identity", "test_id")
    class Identity(NeuralOperatorBase):
        def __init__(self, n_dims: int = 1):
            super().__init__()
            self.in_channels = self.out_channels = 1
            self.n_dims = n_dims

        def forward(self, x):
            return x

    assert {"test_identity", "test_id"} <= set(available_models())
    assert create_model("test_id", {"n_dims": 2}).model_config == {
        "model_type": "test_identity", "n_dims": 2}
    with pytest.raises(ValueError, match="already registered"):
        register_model("fno")(Identity)
    with pytest.raises(TypeError, match="NeuralOperatorBase"):
        register_model("plain")(nn.Linear)
