"""Tests of nol_fast.models.interop: FNOs and checkpoints converted from and to neuraloperator.

Converted models must give neuraloperator's outputs and gradients (relative error < 1e-5 in
float32) on even grids. On odd grids neuraloperator's inverse transform reorders the modes
with ``fftshift`` where ``ifftshift`` is needed; there the reference is a naive DFT.
"""

from __future__ import annotations

import inspect
import sys

import pytest
import torch
from torch.nn import functional as F

neuralop = pytest.importorskip("neuralop")

from neuralop.layers.embeddings import GridEmbeddingND  # noqa: E402
from neuralop.layers.spectral_convolution import SpectralConv as TheirConv  # noqa: E402
from test_models import naive_spectral_conv  # noqa: E402

from nol_fast.data import generate_heat  # noqa: E402
from nol_fast.models import FNO, SpectralConv  # noqa: E402
from nol_fast.models.interop import (  # noqa: E402
    spectral_conv_from_neuralop,
    spectral_conv_to_neuralop,
    state_dict_from_neuralop,
    state_dict_to_neuralop,
)

needs_output_shape = pytest.mark.skipif(
    "output_shape" not in inspect.signature(SpectralConv.forward).parameters,
    reason="SpectralConv.forward(x, output_shape) is not available yet",
)


def theirs(n_modes, in_channels=2, out_channels=3, hidden_channels=8, seed=0, **kwargs):
    """A neuraloperator FNO whose parameters are all perturbed (gates and biases included)."""
    torch.manual_seed(seed)
    model = neuralop.models.FNO(n_modes, in_channels, out_channels, hidden_channels, **kwargs)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.2 * torch.randn_like(param))
    return model


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


CASES = [
    ((8,), (32,), {}),
    ((8, 6), (16, 12), {}),
    ((4, 4, 4), (8, 8, 6), {}),
    ((7, 5), (16, 12), {"positional_embedding": None}),
    ((8, 8), (16, 16), {"domain_padding": 0.25}),
    ((4, 4, 4), (8, 8, 6), {"domain_padding": [0.25, 0, 0.5]}),
    ((8,), (32,), {"non_linearity": F.relu, "use_channel_mlp": False,
                   "fno_skip": "soft-gating", "n_layers": 2}),
    ((8, 6), (16, 12), {"channel_mlp_skip": "linear", "fno_skip": "identity",
                        "lifting_channel_ratio": 0, "channel_mlp_expansion": 1.0}),
]


@pytest.mark.parametrize(("n_modes", "grid", "kwargs"), CASES)
def test_from_and_to_neuralop_give_the_same_outputs(n_modes, grid, kwargs):
    model = theirs(n_modes, **kwargs)
    ours = FNO.from_neuralop(model)
    x = torch.randn(2, 2, *grid)
    with torch.no_grad():
        expected = model(x)
        assert rel_err(ours(x), expected) < 1e-5
        back = ours.to_neuralop()
        assert rel_err(back(x), expected) < 1e-5
    assert ours.count_parameters() == sum(
        p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


@needs_output_shape
@pytest.mark.parametrize(("n_modes", "grid", "kwargs", "output_shape"), [
    ((8,), (32,), {}, (48,)),
    ((8,), (32,), {"resolution_scaling_factor": [1, 1.5], "n_layers": 2}, None),
    ((8,), (16,), {"resolution_scaling_factor": 2, "n_layers": 1, "domain_padding": 0.25},
     None),
    # neuraloperator places the negative frequencies of the non-last grid dimensions
    # wrongly on a larger grid, so only the last dimension is rescaled in 2-D and 3-D.
    ((8, 6), (16, 12), {}, (16, 20)),
    ((8, 6), (16, 12), {"resolution_scaling_factor": [[1, 2], [1, 1]], "n_layers": 2}, None),
    ((4, 4, 4), (8, 8, 6), {}, (8, 8, 12)),
])
def test_super_resolution_matches_neuralop(n_modes, grid, kwargs, output_shape):
    model = theirs(n_modes, **kwargs)
    ours = FNO.from_neuralop(model)
    x = torch.randn(2, 2, *grid)
    with torch.no_grad():
        expected = model(x, output_shape=output_shape)
        assert rel_err(ours(x, output_shape=output_shape), expected) < 1e-5


def test_default_models_have_the_same_parameter_count():
    for n_modes in [(16,), (12, 12), (6, 6, 6)]:
        mine = FNO(n_modes, in_channels=3, out_channels=2, hidden_channels=32)
        other = neuralop.models.FNO(n_modes, 3, 2, 32)
        assert mine.count_parameters() == sum(
            p.numel() * (2 if p.is_complex() else 1) for p in other.parameters())


def test_state_dict_conversion_round_trip(tmp_path):
    model = theirs((6, 8))
    saved = model.state_dict()
    torch.save(saved, tmp_path / "fno.pt")
    loaded = torch.load(tmp_path / "fno.pt", weights_only=False)
    ours = FNO.from_neuralop(loaded)  # options from '_metadata'
    back = state_dict_to_neuralop(ours.state_dict())
    assert back.keys() == {k for k in saved if k != "_metadata"}
    for key, value in back.items():
        assert torch.equal(value, saved[key]), key
    mine = FNO((6, 8), in_channels=2, out_channels=3, hidden_channels=8)
    mine.load_state_dict(state_dict_from_neuralop(saved))
    x = torch.randn(1, 2, 12, 16)
    with torch.no_grad():
        assert rel_err(mine(x), model(x)) < 1e-5


@pytest.mark.parametrize(("n_modes", "grid"), [((7,), (20,)), ((7, 6), (16, 14)),
                                               ((5, 4, 6), (8, 6, 10))])
def test_spectral_conv_conversion(n_modes, grid):
    torch.manual_seed(0)
    other = TheirConv(3, 4, n_modes)
    conv = spectral_conv_from_neuralop(other)
    x = torch.randn(2, 3, *grid)
    with torch.no_grad():
        assert rel_err(conv(x), other(x)) < 1e-5
        back = spectral_conv_to_neuralop(conv)
        assert rel_err(back(x), other(x)) < 1e-5
    assert torch.equal(back.weight.tensor, other.weight.tensor)


def test_gradients_match_and_the_converted_model_trains():
    x, y = generate_heat(8, resolution=16, n_dims=2, seed=0)
    model = theirs((6, 6), in_channels=1, out_channels=1, hidden_channels=8)
    ours = FNO.from_neuralop(model)
    F.mse_loss(model(x), y).backward()
    F.mse_loss(ours(x), y).backward()
    expected = state_dict_from_neuralop(
        {name: p.grad for name, p in model.named_parameters()})
    for name, param in ours.named_parameters():
        assert rel_err(param.grad, expected[name]) < 1e-4, name

    optimizer = torch.optim.Adam(ours.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = F.mse_loss(ours(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2


def test_odd_grids_follow_the_naive_dft():
    # Replace neuraloperator's spectral convolutions by a naive DFT with the same centred
    # weights: that reference matches ours, while neuraloperator itself differs on odd grids.
    # (neuraloperator computes its grid embedding in float32: leave it out for a 1e-10 check)
    model = theirs((6, 5), in_channels=1, out_channels=1, positional_embedding=None)
    ours = FNO.from_neuralop(model).double()
    x = torch.randn(2, 1, 15, 9, dtype=torch.float64)
    with torch.no_grad():
        plain = model(x.float()).double()
        model.double()
        for conv in model.fno_blocks.convs:
            w = conv.weight.tensor.detach()
            pairs = [[(i - m // 2, i) for i in range(m)] for m in w.shape[2:-1]]
            pairs.append([(j, j) for j in range(w.shape[-1])])
            conv.forward = (lambda z, output_shape=None, w=w, b=conv.bias, p=pairs:
                            naive_spectral_conv(z, w, b.reshape(-1), p))
        reference = model(x)
        assert rel_err(ours(x), reference) < 1e-10
        assert rel_err(plain, reference) > 1e-3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"factorization": "tucker", "rank": 0.5}, "factorization='tucker'"),
    ({"separable": True}, "separable=True"),
    ({"norm": "group_norm"}, "norm='group_norm'"),
    ({"preactivation": True}, "preactivation=True"),
    ({"channel_mlp_dropout": 0.1}, "channel_mlp_dropout=0.1"),
    ({"stabilizer": "tanh"}, "stabilizer='tanh'"),
    ({"non_linearity": F.elu}, "non_linearity=<function elu"),
    ({"positional_embedding": GridEmbeddingND(1, 2, [[0, 2], [0, 1]])},
     "positional_embedding=GridEmbeddingND"),
])
def test_unsupported_neuralop_options_are_named(kwargs, message):
    model = neuralop.models.FNO((4, 4), 1, 1, 4, **kwargs)
    with pytest.raises(ValueError, match="unsupported neuraloperator") as err:
        FNO.from_neuralop(model)
    assert message in str(err.value)


def test_other_unsupported_inputs():
    with pytest.raises(ValueError, match="unsupported neuraloperator model TFNO"):
        FNO.from_neuralop(neuralop.models.TFNO((4, 4), 1, 1, 4))
    with pytest.raises(ValueError, match="'_metadata'"):
        FNO.from_neuralop({"lifting.fcs.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="'fno_blocks.convs.0.weight.core' has no counterpart"):
        state_dict_from_neuralop({"fno_blocks.convs.0.weight.core": torch.zeros(1)})
    with pytest.raises(ValueError, match="resolution_scaling_factor=\\[2.0\\]"):
        spectral_conv_from_neuralop(TheirConv(2, 2, (4,), resolution_scaling_factor=2))


def test_missing_neuralop_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "neuralop", None)
    with pytest.raises(ImportError, match=r"pip install nol-fast\[interop\]"):
        FNO((4,)).to_neuralop()


def test_spectral_conv_classmethods_round_trip():
    from nol_fast.models import SpectralConv

    theirs = TheirConv(3, 4, n_modes=(6, 5))
    ours = SpectralConv.from_neuralop(theirs)
    x = torch.randn(2, 3, 16, 12)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
    back = ours.to_neuralop()
    torch.testing.assert_close(back(x), theirs(x), rtol=1e-5, atol=1e-6)
