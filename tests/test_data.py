"""Tests of nol_fast.data: GRF statistics, the heat solution, the cache and the loaders."""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from nol_fast.config import Section
from nol_fast.data import (
    available_datasets,
    cached,
    create_data_loader,
    default_cache_dir,
    generate_heat,
    register_dataset,
    sample_grf,
    solve_heat,
)
from nol_fast.data.cache import cache_key, cache_path


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Point the default cache at a fresh temporary directory."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("NOL_FAST_CACHE_DIR", str(directory))
    return directory


def grf_eigenvalues(k2, alpha, tau, sigma):
    """The prescribed spectrum: sigma^2 (4 pi^2 |k|^2 + tau^2)^(-alpha)."""
    return sigma**2 * (4 * math.pi**2 * k2 + tau**2) ** (-alpha)


# --------------------------------------------------------------------------------- GRF


def test_grf_fourier_coefficients_have_the_prescribed_variance():
    n, size, alpha, tau = 1000, 16, 2.5, 4.0
    fields = sample_grf(n, size, 2, alpha=alpha, tau=tau, sigma=2.0,
                       generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert fields.shape == (n, size, size)
    coeffs = torch.fft.rfft2(fields, norm="forward")
    kx = torch.fft.fftfreq(size, 1 / size, dtype=torch.float64)[:, None]
    ky = torch.arange(size // 2 + 1, dtype=torch.float64)[None, :]
    expected = grf_eigenvalues(kx**2 + ky**2, alpha, tau, 2.0)
    ratio = (coeffs.abs() ** 2).mean(0) / expected
    # |c|^2 / lambda is Exp(1) (chi^2_1 for real modes): relative std <= sqrt(2 / n).
    assert (ratio - 1).abs().max() < 6 * math.sqrt(2 / n)


def test_grf_covariance_in_physical_space():
    n, size, alpha, tau = 4000, 32, 2.0, 3.0
    fields = sample_grf(n, size, 1, alpha=alpha, tau=tau,
                        generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    k = torch.fft.fftfreq(size, 1 / size, dtype=torch.float64)
    lam = grf_eigenvalues(k**2, alpha, tau, tau ** (alpha - 0.5))  # default sigma
    lags = torch.arange(size, dtype=torch.float64)
    # c(r) = sum_k lambda_k cos(2 pi k r) over the frequencies of the grid.
    expected = (lam * torch.cos(2 * math.pi * torch.outer(lags, k) / size)).sum(1)
    empirical = torch.stack([(fields * torch.roll(fields, -j, 1)).mean() for j in range(size)])
    assert (empirical - expected).abs().max() < 0.08 * expected[0]
    assert abs(fields.mean().item()) < 4 * math.sqrt(lam[0].item() / n)
    assert not fields.is_complex()


@pytest.mark.parametrize("n_dims", [1, 2, 3])
def test_grf_is_reproducible_from_the_generator(n_dims):
    def draw(seed, dtype=torch.float32):
        return sample_grf(3, 8, n_dims, generator=torch.Generator().manual_seed(seed),
                          dtype=dtype)

    first = draw(0)
    assert first.shape == (3, *[8] * n_dims) and first.dtype == torch.float32
    assert torch.equal(first, draw(0))
    assert not torch.allclose(first, draw(1))
    torch.testing.assert_close(draw(0, torch.float64).float(), first)


def test_grf_errors():
    with pytest.raises(ValueError, match="n_dims must be 1, 2 or 3, got 4"):
        sample_grf(1, 8, 4)
    with pytest.raises(ValueError, match="tau"):
        sample_grf(1, 8, 2, tau=0.0)


# -------------------------------------------------------------------------------- heat


def test_heat_single_mode_decays_at_the_exact_rate():
    kappa, time, size = 0.02, 0.3, 37
    x = torch.arange(size, dtype=torch.float64) / size
    u0 = torch.sin(2 * math.pi * x).view(1, 1, size)
    expected = math.exp(-4 * math.pi**2 * kappa * time) * u0
    torch.testing.assert_close(solve_heat(u0, kappa, time), expected, rtol=0, atol=1e-12)


def test_heat_two_dimensional_mode_and_superposition():
    kappa, time, size = 0.01, 0.5, 24
    axis = torch.arange(size, dtype=torch.float64) / size
    x, y = torch.meshgrid(axis, axis, indexing="ij")
    mode_a = torch.sin(2 * math.pi * x) * torch.cos(4 * math.pi * y)  # |k|^2 = 1 + 4
    mode_b = torch.cos(6 * math.pi * (x + y))  # |k|^2 = 9 + 9
    rate = -4 * math.pi**2 * kappa * time
    u0 = (2.0 * mode_a - 0.5 * mode_b + 1.5).view(1, 1, size, size)
    expected = 2.0 * math.exp(5 * rate) * mode_a - 0.5 * math.exp(18 * rate) * mode_b + 1.5
    torch.testing.assert_close(solve_heat(u0, kappa, time)[0, 0], expected, rtol=0, atol=1e-12)
    u1 = torch.randn(2, 3, size, size, dtype=torch.float64)
    torch.testing.assert_close(solve_heat(3 * u0 + u1, kappa, time),
                               3 * solve_heat(u0, kappa, time) + solve_heat(u1, kappa, time))


def test_heat_matches_a_finite_difference_integration():
    kappa, time, size = 0.01, 0.5, 128
    u0 = sample_grf(1, size, 1, generator=torch.Generator().manual_seed(3),
                    dtype=torch.float64)[0]
    eye = np.eye(size)
    laplacian = (np.roll(eye, 1, 0) + np.roll(eye, -1, 0) - 2 * eye) * size**2
    solution = solve_ivp(lambda t, u: kappa * laplacian @ u, (0, time), u0.numpy(),
                         method="BDF", jac=kappa * laplacian, rtol=1e-10, atol=1e-12)
    assert solution.success
    reference = solution.y[:, -1]
    exact = solve_heat(u0.view(1, 1, size), kappa, time)[0, 0].numpy()
    assert np.linalg.norm(exact - reference) < 1e-3 * np.linalg.norm(reference)
    assert np.linalg.norm(exact - u0.numpy()) > 0.05 * np.linalg.norm(reference)


@pytest.mark.parametrize("n_dims", [1, 2, 3])
def test_generate_heat_pairs(n_dims):
    x, y = generate_heat(5, resolution=9, n_dims=n_dims, seed=4)
    assert x.shape == y.shape == (5, 1, *[9] * n_dims)
    assert x.dtype == y.dtype == torch.float32
    torch.testing.assert_close(y, solve_heat(x.double(), 0.01, 0.5).float(),
                               rtol=1e-5, atol=1e-6)


def test_generate_heat_is_seeded_and_batched():
    x, y = generate_heat(300, resolution=8, n_dims=1, seed=0)  # more than one batch
    x2, y2 = generate_heat(300, resolution=8, n_dims=1, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = generate_heat(300, resolution=8, n_dims=1, seed=1)
    assert not torch.allclose(x, x3)
    assert len(torch.unique(x[:, 0, 0])) == 300  # every sample is a fresh draw
    # Output spectrum = input spectrum times the decay factor.
    x64, y64 = generate_heat(300, resolution=8, n_dims=1, seed=0, dtype=torch.float64)
    torch.testing.assert_close(x64.float(), x)
    ratio = torch.fft.rfft(y64, dim=-1).abs() / torch.fft.rfft(x64, dim=-1).abs()
    k = torch.arange(5, dtype=torch.float64)
    expected = torch.exp(-4 * math.pi**2 * 0.01 * 0.5 * k**2)
    torch.testing.assert_close(ratio, expected.expand_as(ratio), rtol=1e-9, atol=0)


# ------------------------------------------------------------------------------- cache


def counting_builder(value=1.0):
    calls = []

    def build():
        calls.append(1)
        return {"x": torch.full((3, 2), value), "y": torch.arange(3)}

    return build, calls


def test_cache_hit_skips_the_builder(cache_dir, caplog):
    build, calls = counting_builder()
    with caplog.at_level(logging.INFO, logger="nol_fast.data.cache"):
        first = cached("toy", {"n": 3}, build)
        second = cached("toy", {"n": 3}, build)
    assert len(calls) == 1
    assert first.keys() == second.keys() == {"x", "y"}
    assert torch.equal(first["x"], second["x"]) and torch.equal(first["y"], second["y"])
    messages = [record.getMessage() for record in caplog.records]
    assert "generating dataset 'toy'" in messages[0]
    assert "loaded cached dataset 'toy'" in messages[1]
    assert default_cache_dir() == cache_dir
    assert cache_path("toy", {"n": 3}).parent == cache_dir


def test_cache_is_keyed_by_name_and_params(tmp_path):
    build, calls = counting_builder()
    cached("toy", {"n": 3, "seed": 0}, build, cache_dir=tmp_path)
    cached("toy", {"seed": 0, "n": 3}, build, cache_dir=tmp_path)  # same key, any order
    assert len(calls) == 1
    cached("toy", {"n": 3, "seed": 1}, build, cache_dir=tmp_path)
    cached("other", {"n": 3, "seed": 0}, build, cache_dir=tmp_path)
    assert len(calls) == 3
    assert len(list(tmp_path.glob("*.pt"))) == 3
    assert cache_key("toy", {"a": (1, 2)}) == cache_key("toy", {"a": [1, 2]})
    with pytest.raises(TypeError, match="plain JSON"):
        cache_key("toy", {"device": torch.device("cpu")})


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    build, _ = counting_builder()
    cached("toy", {"n": 3}, build, cache_dir=tmp_path)
    assert os.listdir(tmp_path) == [cache_path("toy", {"n": 3}, tmp_path).name]

    def failing_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        cached("toy", {"n": 4}, build, cache_dir=tmp_path)
    assert os.listdir(tmp_path) == [cache_path("toy", {"n": 3}, tmp_path).name]


def test_corrupt_cache_file_is_regenerated(tmp_path):
    build, calls = counting_builder(value=2.0)
    path = cache_path("toy", {"n": 3}, tmp_path)
    path.write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        data = cached("toy", {"n": 3}, build, cache_dir=tmp_path)
    assert len(calls) == 1 and torch.equal(data["x"], torch.full((3, 2), 2.0))
    cached("toy", {"n": 3}, build, cache_dir=tmp_path)
    assert len(calls) == 1  # the rewritten file is read back


# ----------------------------------------------------------------------------- loaders

SMALL = {"dataset": "heat", "resolution": 8, "n_train": 20, "n_val": 6, "n_test": 4,
         "batch_size": 8}


def collect(loader):
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_loader_splits_are_disjoint_contiguous_slices(cache_dir):
    splits = {s: collect(create_data_loader({**SMALL, "shuffle": False}, s))
              for s in ("train", "val", "test")}
    assert [len(splits[s][0]) for s in ("train", "val", "test")] == [20, 6, 4]
    x, y = generate_heat(30, resolution=8, n_dims=2, seed=0)
    torch.testing.assert_close(torch.cat([splits[s][0] for s in ("train", "val", "test")]), x)
    torch.testing.assert_close(torch.cat([splits[s][1] for s in ("train", "val", "test")]), y)
    rows = torch.cat([splits[s][0] for s in ("train", "val", "test")]).flatten(1)
    assert len(torch.unique(rows, dim=0)) == 30
    assert len(list(cache_dir.glob("heat-*.pt"))) == 1  # one file for all splits


def test_loader_batches_are_float32_pairs():
    loader = create_data_loader(Section(**SMALL), "val")
    batch = next(iter(loader))
    assert isinstance(batch, (tuple, list)) and len(batch) == 2
    x, y = batch
    assert x.shape == y.shape == (6, 1, 8, 8)
    assert x.dtype == y.dtype == torch.float32
    assert loader.batch_size == 8 and not loader.drop_last


def test_loader_is_deterministic_and_shuffles_reproducibly():
    first = create_data_loader(SMALL, "train")
    second = create_data_loader(SMALL, "train")
    epoch_a, epoch_b = collect(first), collect(second)
    torch.testing.assert_close(epoch_a, epoch_b)
    ordered = collect(create_data_loader({**SMALL, "shuffle": False}, "train"))
    assert not torch.equal(epoch_a[0], ordered[0])  # shuffled ...
    torch.testing.assert_close(epoch_a[0].sum(0), ordered[0].sum(0))  # ... the same samples
    # Restoring the generator state replays an epoch.
    state = first.generator.get_state()
    epoch_2 = collect(first)
    assert not torch.equal(epoch_2[0], epoch_a[0])
    first.generator.set_state(state)
    torch.testing.assert_close(collect(first), epoch_2)
    other_seed = collect(create_data_loader({**SMALL, "seed": 1}, "train"))
    assert not torch.allclose(other_seed[0].sum(0), ordered[0].sum(0))


def test_loaders_leave_the_global_generator_alone():
    for split in ("train", "val"):
        loader = create_data_loader(SMALL, split)
        state = torch.get_rng_state()
        collect(loader)
        assert torch.equal(torch.get_rng_state(), state)


def test_loader_never_shuffles_val_and_test():
    for split in ("val", "test"):
        loaded = collect(create_data_loader({**SMALL, "shuffle": True}, split))
        plain = collect(create_data_loader({**SMALL, "shuffle": False}, split))
        assert torch.equal(loaded[0], plain[0])


def test_loader_without_cache_writes_nothing(cache_dir, tmp_path):
    for setting in (False, "none", "None"):
        create_data_loader({**SMALL, "cache_dir": setting}, "test")
    assert not cache_dir.exists()
    create_data_loader({**SMALL, "cache_dir": str(tmp_path / "elsewhere")}, "test")
    assert len(list((tmp_path / "elsewhere").glob("heat-*.pt"))) == 1 and not cache_dir.exists()


def test_loader_errors():
    with pytest.raises(ValueError, match="unknown dataset 'darcyy'; choose one of: .*darcy"):
        create_data_loader({"dataset": "darcyy"}, "train")
    with pytest.raises(ValueError, match=r"unknown data option\(s\) 'resolutoin' for dataset "
                                         r"'heat'; known options: dataset, n_train.*resolution"):
        create_data_loader({"resolutoin": 16}, "train")
    with pytest.raises(ValueError, match="unknown split 'valid'; choose one of: train, val, test"):
        create_data_loader(SMALL, "valid")
    with pytest.raises(ValueError, match="split 'test' is empty"):
        create_data_loader({**SMALL, "n_test": 0}, "test")
    with pytest.raises(ValueError, match="'batch_size' must be an integer >= 1, got 0"):
        create_data_loader({**SMALL, "batch_size": 0}, "train")
    with pytest.raises(ValueError, match="'shuffle' must be true or false, got 'no'"):
        create_data_loader({**SMALL, "shuffle": "no"}, "train")
    with pytest.raises(ValueError, match="cache_dir"):
        create_data_loader({**SMALL, "cache_dir": 3}, "train")


def test_registered_dataset_plugs_into_the_loader(cache_dir):
    @register_dataset("test_ramp", resolution=4, offset=0)
    def build_ramp(n_samples, seed, resolution, offset):
        x = torch.arange(n_samples * resolution, dtype=torch.float64)
        x = x.view(n_samples, 1, resolution) + offset
        return {"x": x, "y": 2 * x}

    assert "test_ramp" in available_datasets()
    config = {"dataset": "test_ramp", "resolution": 5, "n_train": 3, "n_val": 2, "n_test": 1}
    x, y = collect(create_data_loader(config, "val"))
    assert x.dtype == torch.float32 and x.shape == (2, 1, 5)
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([15.0, 20.0]))
    torch.testing.assert_close(y, 2 * x)
    with pytest.raises(ValueError, match="clash"):
        register_dataset("bad", seed=1)
    with pytest.raises(ValueError, match="clash"):
        register_dataset("bad", history=1)
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("heat")(build_ramp)
