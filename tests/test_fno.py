"""Tests of the FNO architecture: options, super-resolution, padding, resampling, summaries."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from naive_dft import naive_spectral_conv
from torch.nn import functional as F

from nol_fast.cli.defaults import default_config
from nol_fast.models import FNO, SpectralConv, create_model
from nol_fast.models.layers import ChannelMLP, FNOBlock, SoftGating, resample

needs_output_shape = pytest.mark.skipif(
    "output_shape" not in inspect.signature(SpectralConv.forward).parameters,
    reason="SpectralConv.forward(x, output_shape) is not available yet",
)


def smooth(grid: tuple[int, ...]) -> torch.Tensor:
    """A band-limited periodic function sampled on ``grid``, shape (1, 1, *grid), float64."""
    axes = [torch.arange(n, dtype=torch.float64) / n for n in grid]
    coords = torch.meshgrid(*axes, indexing="ij")
    phase = sum((i + 1) * c for i, c in enumerate(coords))
    return (torch.sin(2 * math.pi * phase) + 0.5 * torch.cos(2 * math.pi * coords[0]))[None, None]


def test_default_architecture():
    model = FNO((8, 8), in_channels=2, out_channels=3, hidden_channels=16)
    assert model.positional_embedding and model.n_layers == 4
    assert [layer.in_channels for layer in model.lifting.layers] == [4, 32]
    assert [layer.out_channels for layer in model.projection.layers] == [32, 3]
    for i, block in enumerate(model.blocks):
        assert isinstance(block, FNOBlock) and block.last == (i == 3)
        assert block.fno_skip.weight.shape == (16, 16, 1) and block.fno_skip.bias is None
        assert isinstance(block.channel_mlp, ChannelMLP)
        assert [layer.out_channels for layer in block.channel_mlp.layers] == [8, 16]
        assert isinstance(block.channel_mlp_skip, SoftGating)
        assert block.spectral.weight.shape == (16, 16, 8, 5)



def fno_by_hand(state: dict[str, torch.Tensor], x: torch.Tensor, n_modes, n_layers: int):
    """The default FNO as its docstring describes it, computed from its state dict alone.

    Embedding of the coordinates j / n, a lifting MLP, ``n_layers`` blocks of
    ``act(spectral(h) + linear_skip(h))`` then ``act(mlp(.) + gate * h)`` (no activations in
    the last block), and a projection MLP; GELU everywhere, spectral convolutions by naive DFT.
    """
    def pointwise(h, name, bias=True):
        y = torch.einsum("oi,bi...->bo...", state[f"{name}.weight"][..., 0], h)
        return y + state[f"{name}.bias"].view(-1, *[1] * (h.dim() - 2)) if bias else y

    def channel_mlp(h, name):
        return pointwise(F.gelu(pointwise(h, f"{name}.layers.0")), f"{name}.layers.1")

    grid = x.shape[2:]
    axes = [torch.arange(n, dtype=x.dtype) / n for n in grid]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij")).expand(x.shape[0], -1, *grid)
    h = channel_mlp(torch.cat([x, coords], dim=1), "lifting")
    for i in range(n_layers):
        block, last = f"blocks.{i}", i == n_layers - 1
        y = naive_spectral_conv(h, state[f"{block}.spectral.weight"], n_modes, grid)
        y = y + state[f"{block}.spectral.bias"].view(-1, *[1] * len(grid))
        y = y + pointwise(h, f"{block}.fno_skip", bias=False)
        y = y if last else F.gelu(y)
        gate = state[f"{block}.channel_mlp_skip.weight"].view(-1, *[1] * len(grid))
        y = channel_mlp(y, f"{block}.channel_mlp") + gate * h
        h = y if last else F.gelu(y)
    return channel_mlp(h, "projection")


@pytest.mark.parametrize(("n_modes", "grid"), [((7,), (19,)), ((6, 5), (11, 8))])
def test_values_match_the_architecture_computed_by_hand(n_modes, grid):
    torch.manual_seed(0)
    model = FNO(n_modes, in_channels=2, out_channels=3, hidden_channels=6, n_layers=3).double()
    with torch.no_grad():
        for parameter in model.parameters():  # no parameter at its initial value (gates of 1)
            parameter.copy_(0.5 * torch.randn_like(parameter))
    x = torch.randn(2, 2, *grid, dtype=torch.float64)
    with torch.no_grad():
        expected = fno_by_hand(model.state_dict(), x, n_modes, n_layers=3)
        torch.testing.assert_close(model(x), expected, rtol=1e-10, atol=1e-12)

def test_options_change_the_layers():
    model = FNO((6,), hidden_channels=8, n_layers=2, lifting_channel_ratio=0,
                positional_embedding=False, use_channel_mlp=False, fno_skip="soft-gating")
    assert len(model.lifting.layers) == 1 and model.lifting.layers[0].in_channels == 1
    assert model.blocks[0].channel_mlp is None and model.blocks[0].channel_mlp_skip is None
    assert isinstance(model.blocks[0].fno_skip, SoftGating)
    assert model(torch.randn(2, 1, 20)).shape == (2, 1, 20)
    no_skip = FNO((6,), hidden_channels=8, fno_skip=None, channel_mlp_skip="identity")
    assert no_skip.blocks[0].fno_skip is None
    assert no_skip(torch.randn(2, 1, 20)).shape == (2, 1, 20)


def test_domain_padding_pads_and_crops():
    torch.manual_seed(0)
    plain = FNO((6, 6), hidden_channels=8, n_layers=2)
    padded = FNO((6, 6), hidden_channels=8, n_layers=2, domain_padding=[0.25, 0.125])
    padded.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 16, 24)
    y = padded(x)
    assert y.shape == (2, 1, 16, 24)
    assert not torch.allclose(y, plain(x))
    assert padded.domain_padding == (0.25, 0.125)
    assert FNO((4,), domain_padding=0).domain_padding is None


@needs_output_shape
@pytest.mark.parametrize(("n_modes", "grid", "kwargs", "output_shape", "expected"), [
    ((6,), (20,), {}, (40,), (40,)),
    ((6, 6), (16, 12), {}, (32, 18), (32, 18)),
    ((4, 4, 4), (8, 8, 6), {}, (12, 16, 8), (12, 16, 8)),
    ((6, 6), (16, 12), {"resolution_scaling_factor": 2, "n_layers": 2}, None, (64, 48)),
    ((6, 6), (16, 12), {"resolution_scaling_factor": [[1, 2], 1], "n_layers": 2}, None,
     (16, 24)),
    ((6, 6), (16, 12), {"domain_padding": 0.25}, (32, 24), (32, 24)),
    ((6, 6), (16, 12), {"domain_padding": 0.25, "resolution_scaling_factor": [1, 2],
                        "n_layers": 2}, None, (32, 24)),
])
def test_output_grid(n_modes, grid, kwargs, output_shape, expected):
    model = FNO(n_modes, hidden_channels=8, **kwargs)
    assert model(torch.randn(2, 1, *grid), output_shape=output_shape).shape == (2, 1, *expected)


@needs_output_shape
def test_super_resolution_matches_the_fine_grid_without_embedding():
    # Without the positional embedding every layer but the skip interpolation is exact, so
    # evaluating on a finer grid agrees with feeding the finer grid, up to the interpolation.
    torch.manual_seed(0)
    model = FNO((6,), hidden_channels=8, n_layers=1, positional_embedding=False,
                fno_skip=None, channel_mlp_skip=None, use_channel_mlp=False).double()
    coarse, fine = smooth((32,)), smooth((64,))
    with torch.no_grad():
        torch.testing.assert_close(model(coarse, output_shape=(64,)), model(fine))


def test_resample():
    x = smooth((8, 6, 10))
    torch.testing.assert_close(resample(x, (16, 12, 20))[..., ::2, ::2, ::2], x)
    assert resample(x, (8, 6, 10)) is x
    line = torch.linspace(0, 1, 5).view(1, 1, 5)
    torch.testing.assert_close(resample(line, (9,)), torch.linspace(0, 1, 9).view(1, 1, 9))
    assert resample(torch.randn(1, 2, 8, 8), (12, 16)).shape == (1, 2, 12, 16)


def test_option_errors():
    with pytest.raises(ValueError, match=r"domain_padding must be one fraction >= 0 or 2 of "
                                         r"them .* got \[0.1\]"):
        FNO((4, 4), domain_padding=[0.1])
    with pytest.raises(ValueError, match=r"resolution_scaling_factor .* got \[1, 2\]"):
        FNO((4,), n_layers=3, resolution_scaling_factor=[1, 2])
    with pytest.raises(ValueError, match=r"unknown skip connection 'gated'; choose one of: "
                                         r"'linear', 'soft-gating', 'identity', None"):
        FNO((4,), fno_skip="gated")
    with pytest.raises(ValueError, match=r"projection_channel_ratio .* got 0"):
        FNO((4,), projection_channel_ratio=0)
    with pytest.raises(ValueError, match=r"output_shape must be 2 positive ints .* \(8,\)"):
        FNO((4, 4))(torch.randn(1, 1, 8, 8), output_shape=(8,))


def test_summary_and_registry():
    config = default_config()["model"]
    model = create_model(config["model_type"], config)
    assert isinstance(model, FNO) and model.hidden_channels == config["hidden_channels"] == 32
    summary = model.get_model_summary()
    assert summary["n_parameters"] == model.count_parameters() > 0
    assert summary["model_config"]["n_modes"] == [12, 12]
    assert summary["model_class"] == "FNO" and summary["n_dims"] == 2
    rebuilt = create_model("fno", {"n_modes": [4], "domain_padding": [0.5],
                                   "resolution_scaling_factor": 1, "activation": "relu"})
    assert rebuilt.model_config["domain_padding"] == [0.5]


LAYOUT_CASES = [
    ((8, 6), (13, 10), {}),
    ((9,), (31,), {"n_layers": 3}),
    ((4, 4, 4), (7, 6, 5), {"hidden_channels": 6}),
    ((6, 6), (12, 12), {"domain_padding": 0.2, "fno_skip": "soft-gating",
                        "channel_mlp_skip": "identity"}),
    ((6, 6), (12, 12), {"use_channel_mlp": False, "activation": "silu"}),
    ((6, 6), (12, 12), {"fno_skip": "identity", "channel_mlp_skip": "linear",
                        "lifting_channel_ratio": 0, "positional_embedding": False}),
]


@pytest.mark.parametrize("n_modes,grid,kwargs", LAYOUT_CASES,
                         ids=[str(i) for i in range(len(LAYOUT_CASES))])
def test_channels_last_path_matches_the_channels_first_layers(n_modes, grid, kwargs):
    # On the CPU the FNO runs channels-last through the fused ops; the oracle is the same model
    # run through its channels-first layers (Conv1d pointwise maps, the FFT spectral op).
    from tests.conftest import require_extension

    require_extension()
    torch.manual_seed(0)
    model = FNO(n_modes, in_channels=2, out_channels=3, **{"hidden_channels": 8, **kwargs})
    x = torch.randn(2, 2, *grid)
    widths, shapes, crops = model._plan(tuple(grid), None)
    assert model._channels_last_path(x, shapes)

    def run(forward):
        out = forward()
        # a positive probe: no gradient is a sum that cancels to rounding noise
        probe = 1 + torch.rand(out.shape, generator=torch.Generator().manual_seed(1))
        grads = torch.autograd.grad((out * probe).sum(), list(model.parameters()))
        return [out, *grads]

    fast = run(lambda: model(x))
    for block in model.blocks:
        block.spectral.backend = "reference"
    assert not model._channels_last_path(x, shapes)
    slow = run(lambda: model(x))
    for got, want in zip(fast, slow, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_channels_last_path_only_where_it_applies():
    model = FNO((6, 6), hidden_channels=8, resolution_scaling_factor=2)
    x = torch.randn(1, 1, 8, 8)
    _, shapes, _ = model._plan((8, 8), None)
    assert not model._channels_last_path(x, shapes)  # blocks change the grid
    model = FNO((6, 6), hidden_channels=8)
    _, shapes, _ = model._plan((8, 8), (16, 16))
    assert not model._channels_last_path(x, shapes)  # output_shape: super-resolution
    _, shapes, _ = model._plan((8, 8), None)
    assert model._channels_last_path(x, shapes)
