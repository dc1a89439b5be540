"""Tests of nol_fast.data.files: reading PDE data files into (x, y) pairs, writing, describing."""

from __future__ import annotations

import json
import os
import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from nol_fast.data.cache import cached
from nol_fast.data.files import (
    LAYOUT_TAG,
    ArrayInfo,
    DataFileError,
    FormatReader,
    MissingKeyError,
    PairFile,
    describe_file,
    formats,
    register_format,
    save_pairs,
    save_series,
)


def _pairs(n: int = 6, cx: int = 1, cy: int = 2, grid: tuple[int, ...] = (8, 8), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, cx, *grid, generator=g), torch.randn(n, cy, *grid, generator=g)


def _assert_equal(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Exact equality, dtype and shape included (float64 data become float32 the same way)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert torch.equal(actual, expected)


def _vars_first(step: np.ndarray) -> torch.Tensor:
    """One PDEBench time step ``(*grid, V)`` as float32 channels ``(V, *grid)``."""
    return torch.from_numpy(np.moveaxis(step, -1, 0)).float()


def _write_h5(path, **datasets):
    with h5py.File(path, "w") as file:
        for name, value in datasets.items():
            file[name] = value
    return path


# ---- writers: round trips ----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".h5", ".hdf5", ".pt", ".npz"])
@pytest.mark.parametrize("grid", [(16,), (8, 8)])
def test_save_pairs_round_trip(tmp_path, suffix, grid):
    x, y = _pairs(grid=grid)
    meta = {"name": "heat", "params": {"resolution": 8, "time": 0.5}}
    path = save_pairs(tmp_path / f"data{suffix}", x, y, meta=meta)
    data = PairFile(path)
    assert data.format == {".h5": "hdf5", ".hdf5": "hdf5"}.get(suffix, suffix[1:])
    assert data.layout == "pairs"
    assert len(data) == data.n_samples == 6
    assert data.shapes == {"x": tuple(x.shape), "y": tuple(y.shape)}
    assert data.meta == meta
    xi, yi = data[4]
    assert xi.dtype == yi.dtype == torch.float32
    assert torch.equal(xi, x[4]) and torch.equal(yi, y[4])
    batch = data.take(range(6))
    assert torch.equal(batch["x"], x) and torch.equal(batch["y"], y)
    # no temporary files left next to the written file
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"data{suffix}"]


def test_save_pairs_keeps_dtype_and_reads_float32(tmp_path):
    x = torch.arange(24, dtype=torch.float64).view(2, 1, 12)
    y = torch.arange(24, dtype=torch.int32).view(2, 1, 12)
    save_pairs(tmp_path / "d.h5", x, y)
    with h5py.File(tmp_path / "d.h5") as file:
        assert file["x"].dtype == np.float64 and file["y"].dtype == np.int32
        assert file["x"].chunks == (1, 1, 12)
        assert file.attrs["layout"] == LAYOUT_TAG
    data = PairFile(tmp_path / "d.h5")
    batch = data.take([1, 0])
    assert batch["x"].dtype == batch["y"].dtype == torch.float32
    assert torch.equal(batch["x"], x.float()[[1, 0]]) and torch.equal(batch["y"], y.float()[[1, 0]])
    assert data.meta == {}


def test_save_pairs_replaces_atomically(tmp_path):
    path = tmp_path / "sub" / "d.npz"
    save_pairs(path, *_pairs(seed=0))
    x, y = _pairs(n=3, seed=1)
    save_pairs(path, x, y, meta={"name": "v2"})
    data = PairFile(path)
    assert len(data) == 3 and data.meta == {"name": "v2"}
    assert torch.equal(data.take([0, 1, 2])["y"], y)
    assert os.listdir(path.parent) == ["d.npz"]


def test_save_series_round_trip_with_meta(tmp_path):
    u = torch.randn(3, 7, 5, 4, generator=torch.Generator().manual_seed(3))
    path = save_series(tmp_path / "s.h5", u, meta={"name": "navier_stokes", "params": {"t": 1}})
    data = PairFile(path, history=2, horizon=3)
    assert data.layout == "series" and data.shapes == {"x": (3, 2, 5, 4), "y": (3, 3, 5, 4)}
    x, y = data[1]  # steps 0-1 of trajectory 1 -> steps 2-4
    assert torch.equal(x, u[1, :2]) and torch.equal(y, u[1, 2:5])
    assert data.meta == {"name": "navier_stokes", "params": {"t": 1}}
    with pytest.raises(TypeError, match="meta must be plain JSON"):
        save_series(tmp_path / "t.h5", u, meta={"f": object()})
    with pytest.raises(ValueError, match=r"\.h5 or \.hdf5"):
        save_series(tmp_path / "t.npz", u)
    assert sorted(os.listdir(tmp_path)) == ["s.h5"]


def test_save_pairs_errors(tmp_path):
    x, y = _pairs()
    with pytest.raises(ValueError, match=r"'\.csv'.*\.h5.*\.npz.*\.pt"):
        save_pairs(tmp_path / "d.csv", x, y)
    with pytest.raises(ValueError, match=r"sample counts.*\(6, 1, 8, 8\).*\(5, 2, 8, 8\)"):
        save_pairs(tmp_path / "d.h5", x, y[:5])
    with pytest.raises(ValueError, match=r"y has shape \(6, 2\)"):
        save_pairs(tmp_path / "d.h5", x, y[:, :, 0, 0])
    with pytest.raises(ValueError, match=r"grid ranks.*\(6, 2, 8\)"):
        save_pairs(tmp_path / "d.h5", x, y[:, :, 0])
    with pytest.raises(ValueError, match=r"x has non-numeric dtype <U1"):
        save_pairs(tmp_path / "d.h5", np.full((2, 1, 3), "a"), np.zeros((2, 1, 3)))
    with pytest.raises(TypeError, match="meta must be plain JSON"):
        save_pairs(tmp_path / "d.h5", x, y, meta={"f": object()})
    assert list(tmp_path.iterdir()) == []


# ---- PDEBench layouts --------------------------------------------------------------------


def test_pdebench_darcy(tmp_path):
    rng = np.random.default_rng(0)
    nu, u = rng.random((5, 16, 16)), rng.random((5, 1, 16, 16))
    path = _write_h5(tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5", nu=nu, tensor=u,
                     **{"x-coordinate": np.linspace(0, 1, 16),
                        "y-coordinate": np.linspace(0, 1, 16)})
    data = PairFile(path)
    assert data.layout == "pdebench-darcy"
    assert data.shapes == {"x": (5, 1, 16, 16), "y": (5, 1, 16, 16)}
    x, y = data[3]
    assert x.dtype == torch.float32
    _assert_equal(x, torch.from_numpy(nu[3][None]).float())
    _assert_equal(y, torch.from_numpy(u[3]).float())
    with pytest.raises(ValueError, match="history/horizon apply to time series.*'nu'"):
        PairFile(path, history=2)
    with pytest.raises(ValueError, match="add_channel_dim.*Darcy"):
        PairFile(path, add_channel_dim=False)


def test_pdebench_time_series_1d(tmp_path):
    rng = np.random.default_rng(1)
    u = rng.random((4, 10, 32))  # (n, T, X)
    path = _write_h5(tmp_path / "1D_Advection_Sols_beta0.1.hdf5", tensor=u,
                     **{"x-coordinate": np.linspace(0, 1, 32),
                        "t-coordinate": np.linspace(0, 2, 11)})
    data = PairFile(path)  # default: first step -> last step
    assert data.layout == "series" and data.shapes == {"x": (4, 1, 32), "y": (4, 1, 32)}
    x, y = data[2]
    _assert_equal(x, torch.from_numpy(u[2, :1]).float())
    _assert_equal(y, torch.from_numpy(u[2, -1:]).float())

    data = PairFile(path, history=3, horizon=2)
    assert data.shapes == {"x": (4, 3, 32), "y": (4, 2, 32)}
    batch = data.take([3, 0])
    _assert_equal(batch["x"], torch.from_numpy(u[[3, 0], 0:3]).float())
    _assert_equal(batch["y"], torch.from_numpy(u[[3, 0], 3:5]).float())

    assert PairFile(path, history=4).shapes["y"] == (4, 1, 32)  # horizon defaults to 1
    assert PairFile(path, horizon=9).shapes == {"x": (4, 1, 32), "y": (4, 9, 32)}
    with pytest.raises(ValueError, match=r"history=6 \+ horizon=5 = 11 exceeds the 10 time "
                                         r"steps of 'tensor' \(4, 10, 32\)"):
        PairFile(path, history=6, horizon=5)
    with pytest.raises(ValueError, match="history must be an integer >= 1, got 0"):
        PairFile(path, history=0)


def test_pdebench_time_series_2d_with_variables(tmp_path):
    rng = np.random.default_rng(2)
    u = rng.random((3, 6, 4, 5, 2))  # (n, T, X, Y, V)
    path = _write_h5(tmp_path / "series.h5", tensor=u)
    data = PairFile(path, history=2, horizon=3)
    assert data.shapes == {"x": (3, 4, 4, 5), "y": (3, 6, 4, 5)}
    x, y = data[1]
    # channels are time-major: (t0 v0, t0 v1, t1 v0, t1 v1)
    expected_x = np.stack([u[1, 0, ..., 0], u[1, 0, ..., 1], u[1, 1, ..., 0], u[1, 1, ..., 1]])
    _assert_equal(x, torch.from_numpy(expected_x).float())
    _assert_equal(y[4:], _vars_first(u[1, 4]))


def test_pdebench_per_sample_groups(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "2D_diff-react_NA_NA.h5"
    samples = [rng.random((5, 6, 6, 2)) for _ in range(3)]  # (T, X, Y, V) each
    with h5py.File(path, "w") as file:
        for i, sample in enumerate(samples):
            group = file.create_group(f"{i:04d}")
            group["data"] = sample
            grid = group.create_group("grid")
            grid["x"], grid["y"], grid["t"] = np.arange(6.0), np.arange(6.0), np.arange(5.0)
    data = PairFile(path)
    assert data.layout == "pdebench-groups" and len(data) == 3
    assert data.shapes == {"x": (3, 2, 6, 6), "y": (3, 2, 6, 6)}
    x, y = data[2]
    _assert_equal(x, _vars_first(samples[2][0]))
    _assert_equal(y, _vars_first(samples[2][-1]))

    windows = PairFile(path, history=2, horizon=2)
    batch = windows.take([2, 0, 2])
    assert batch["x"].shape == (3, 4, 6, 6)
    _assert_equal(batch["x"][1, 2:], _vars_first(samples[0][1]))
    _assert_equal(batch["y"][0, :2], _vars_first(samples[2][2]))
    assert torch.equal(batch["x"][0], batch["x"][2])
    with pytest.raises(ValueError, match="exceeds the 5 time steps of '0000/data'"):
        PairFile(path, history=4, horizon=2)


def test_per_sample_groups_errors(tmp_path):
    path = tmp_path / "groups.h5"
    with h5py.File(path, "w") as file:
        file.create_group("0000")["data"] = np.zeros((4, 6, 6, 1))
        file.create_group("0001")["data"] = np.zeros((4, 6, 5, 1))
    with pytest.raises(ValueError, match=r"'0001/data' has shape \(4, 6, 5, 1\)"):
        PairFile(path)
    with h5py.File(path, "w") as file:
        file.create_group("0000")["data"] = np.zeros((4, 6, 6, 1))
        file.create_group("0001")["other"] = np.zeros((4, 6, 6, 1))
    with pytest.raises(MissingKeyError, match="'data'.*'0001'"):
        PairFile(path)


def test_explicit_hdf5_keys(tmp_path):
    rng = np.random.default_rng(4)
    a, b, u = rng.random((4, 2, 8)), rng.random((4, 8)), rng.random((4, 7, 8))
    path = _write_h5(tmp_path / "any.h5", inputs=a, outputs=b, velocity=u)
    with h5py.File(path, "a") as file:
        file.create_group("nested")["u"] = u
    data = PairFile(path, x_key="inputs", y_key="outputs")
    assert data.shapes == {"x": (4, 2, 8), "y": (4, 1, 8)}
    assert data.keys == {"x": "inputs", "y": "outputs"}
    _assert_equal(data[1][1], torch.from_numpy(b[1:2]).float())
    series = PairFile(path, x_key="nested/u", history=2, horizon=5)  # x_key alone: a series
    assert series.layout == "series" and series.shapes == {"x": (4, 2, 8), "y": (4, 5, 8)}
    _assert_equal(series[3][1], torch.from_numpy(u[3, 2:7]).float())
    with pytest.raises(ValueError, match="no known layout.*'inputs'.*x_key"):
        PairFile(path)
    with pytest.raises(ValueError, match="y_key='outputs' given without x_key"):
        PairFile(path, y_key="outputs")


# ---- .pt, .npz and .npy conventions ------------------------------------------------------


def test_neuraloperator_pt_without_channel_dims(tmp_path):
    x, y = torch.randn(5, 16, 16), torch.randn(5, 16, 16)
    torch.save({"x": x, "y": y}, tmp_path / "darcy_train_16.pt")
    data = PairFile(tmp_path / "darcy_train_16.pt")
    assert data.format == "pt" and data.shapes == {"x": (5, 1, 16, 16), "y": (5, 1, 16, 16)}
    xi, yi = data[2]
    assert torch.equal(xi, x[2:3]) and torch.equal(yi, y[2:3])

    torch.save({"x": torch.randn(4, 32).double(), "y": torch.randn(4, 32)}, tmp_path / "b.pt")
    one_d = PairFile(tmp_path / "b.pt")
    assert one_d.shapes == {"x": (4, 1, 32), "y": (4, 1, 32)} and one_d[0][0].dtype == torch.float32

    # a dim 1 smaller than the grid is taken for channels, unless told otherwise
    torch.save({"x": torch.randn(3, 3, 32, 32), "y": torch.randn(3, 32, 32), "visc": 0.01},
               tmp_path / "c.pt")
    assert PairFile(tmp_path / "c.pt").shapes == {"x": (3, 3, 32, 32), "y": (3, 1, 32, 32)}
    with pytest.raises(ValueError, match=r"different grid ranks.*\(3, 1, 3, 32, 32\)"):
        PairFile(tmp_path / "c.pt", add_channel_dim=True)
    as_stored = PairFile(tmp_path / "darcy_train_16.pt", add_channel_dim=False)
    assert as_stored.shapes == {"x": (5, 16, 16), "y": (5, 16, 16)}


def test_cache_files_keep_their_channels(tmp_path):
    x = torch.randn(4, 16, 16)  # the cache stores (n, c, *grid): 16 channels on a 1-D grid
    cached("wide", {"n": 4}, lambda: {"x": x, "y": x * 2}, cache_dir=tmp_path)
    (path,) = tmp_path.glob("wide-*.pt")
    data = PairFile(path)
    assert data.cache_name == "wide"
    assert data.shapes == {"x": (4, 16, 16), "y": (4, 16, 16)}
    assert torch.equal(data[1][1], x[1] * 2)
    assert "generator: wide (dataset cache file)" in describe_file(path)


def test_npz_with_keys_and_series(tmp_path):
    rng = np.random.default_rng(5)
    a, b, u = rng.random((3, 1, 10)), rng.random((3, 1, 10)), rng.random((3, 6, 10))
    np.savez(tmp_path / "d.npz", a=a, b=b, u=u)
    data = PairFile(tmp_path / "d.npz", x_key="a", y_key="b")
    _assert_equal(data.take([2])["y"], torch.from_numpy(b[2:]).float())
    series = PairFile(tmp_path / "d.npz", x_key="u", history=2, horizon=4)
    _assert_equal(series[0][1], torch.from_numpy(u[0, 2:6]).float())


def test_npz_is_memory_mapped_unless_compressed(tmp_path):
    x, y = _pairs(n=5, grid=(6,))
    np.savez(tmp_path / "plain.npz", x=x.numpy(), y=y.numpy())
    np.savez_compressed(tmp_path / "small.npz", x=x.numpy(), y=y.numpy())
    plain, small = PairFile(tmp_path / "plain.npz"), PairFile(tmp_path / "small.npz")
    for data in (plain, small):
        batch = data.take([4, 0])
        assert torch.equal(batch["x"], x[[4, 0]]) and torch.equal(batch["y"], y[[4, 0]])
    assert isinstance(plain._reader._arrays["x"], np.memmap)
    assert not isinstance(small._reader._arrays["x"], np.memmap)
    fortran = np.asfortranarray(np.arange(24.0).reshape(2, 3, 4))
    np.savez(tmp_path / "f.npz", x=fortran, y=fortran)
    assert np.array_equal(PairFile(tmp_path / "f.npz")[1][0].numpy(), fortran[1])


def test_legacy_pt_format(tmp_path):
    x, y = _pairs(n=3)
    torch.save({"x": x, "y": y}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    data = PairFile(tmp_path / "old.pt")
    assert torch.equal(data.take([2, 1])["y"], y[[2, 1]])


def test_npy_pair_convention(tmp_path):
    rng = np.random.default_rng(6)
    x, y = rng.random((4, 2, 8)).astype(np.float32), rng.random((4, 1, 8)).astype(np.float32)
    np.save(tmp_path / "burgers_x.npy", x)
    np.save(tmp_path / "burgers_y.npy", y)
    for name in ("burgers_x.npy", "burgers_y.npy"):
        data = PairFile(tmp_path / name)
        assert data.format == "npy" and data.shapes == {"x": (4, 2, 8), "y": (4, 1, 8)}
        assert np.array_equal(data[3][0].numpy(), x[3]) and np.array_equal(data[3][1].numpy(), y[3])
    directory = tmp_path / "pairs"
    directory.mkdir()
    np.save(directory / "x.npy", x)
    np.save(directory / "y.npy", y)
    assert np.array_equal(PairFile(directory).take([1, 2])["y"].numpy(), y[1:3])
    assert np.array_equal(PairFile(directory / "x.npy")[0][0].numpy(), x[0])

    np.save(tmp_path / "lonely_x.npy", x)
    with pytest.raises(FileNotFoundError, match="lonely_y.npy"):
        PairFile(tmp_path / "lonely_x.npy")
    np.save(tmp_path / "data.npy", x)
    with pytest.raises(ValueError, match="'data.npy' does not end in _x or _y"):
        PairFile(tmp_path / "data.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="x.npy"):
        PairFile(tmp_path / "empty")
    with pytest.raises(ValueError, match="x_key/y_key do not apply to .npy"):
        PairFile(directory, x_key="x", y_key="y")


# ---- laziness and DataLoader workers -----------------------------------------------------


def test_hdf5_reads_only_requested_samples(tmp_path, monkeypatch):
    path = save_pairs(tmp_path / "d.h5", *_pairs(n=40, grid=(4, 4)))
    series = _write_h5(tmp_path / "s.h5", tensor=np.random.default_rng(7).random((20, 50, 8)))
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, selection, *args, **kwargs):
        reads.append((self.name, selection))
        return original(self, selection, *args, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    data = PairFile(path)
    windows = PairFile(series, history=2, horizon=3)
    assert reads == []  # opening reads metadata only

    data.take([9, 2, 9, 30])
    assert reads == [("/x", ([2, 9, 30],)), ("/y", ([2, 9, 30],))]
    reads.clear()
    data.take([5, 4, 6])  # distinct contiguous indices: one slice
    assert reads == [("/x", (slice(4, 7),)), ("/y", (slice(4, 7),))]
    reads.clear()
    windows.take([3, 11])
    assert reads == [("/tensor", ([3, 11], slice(0, 2))), ("/tensor", ([3, 11], slice(2, 5)))]


def test_dataloader_workers_over_hdf5(tmp_path):
    x, y = _pairs(n=24, grid=(6, 6))
    data = PairFile(save_pairs(tmp_path / "d.h5", x, y))
    data[0]  # an open handle in the parent, inherited by forked workers, must not be used
    restored = pickle.loads(pickle.dumps(data))
    assert restored._reader._handle is None and torch.equal(restored[5][1], y[5])
    loader = DataLoader(data, batch_size=5, shuffle=True, num_workers=2,
                        generator=torch.Generator().manual_seed(0))
    seen_x, seen_y = [], []
    for xb, yb in loader:
        assert xb.shape[1:] == (1, 6, 6) and xb.dtype == torch.float32
        seen_x.append(xb)
        seen_y.append(yb)
    if torch.multiprocessing.get_start_method() == "fork":
        assert data._reader._handle is None  # closed before the workers were forked
    xs, ys = torch.cat(seen_x), torch.cat(seen_y)
    order = torch.stack([(x == row).flatten(1).all(1).nonzero()[0, 0] for row in xs])
    assert sorted(order.tolist()) == list(range(24))
    assert torch.equal(ys, y[order])
    data.close()


def test_take_and_getitem_index_handling(tmp_path):
    x, y = _pairs(n=4)
    data = PairFile(save_pairs(tmp_path / "d.pt", x, y))
    assert torch.equal(data[-1][0], x[3])
    assert torch.equal(data.take(torch.tensor([1, 1]))["x"], x[[1, 1]])
    assert torch.equal(data.take(slice(1, 3))["y"], y[1:3])
    assert data.take([])["x"].shape == (0, 1, 8, 8)
    with pytest.raises(IndexError, match="sample index 4 is out of range.*4 samples"):
        data[4]
    with pytest.raises(TypeError, match="integers"):
        data.take([0.5])


# ---- describe_file -----------------------------------------------------------------------


def test_describe_file(tmp_path):
    x, y = _pairs(n=3, cx=2, cy=1, grid=(8, 8))
    path = save_pairs(tmp_path / "heat.h5", x, y, meta={"name": "heat", "params": {"time": 0.5}})
    text = describe_file(path)
    for fragment in ("format: hdf5", "x ", "float32", "(3, 2, 8, 8)", "chunks (1, 2, 8, 8)",
                     "samples: 3", "x: 2 channels on grid (8, 8)", "y: 1 channel on grid (8, 8)",
                     "generator: heat", '"time": 0.5'):
        assert fragment in text, (fragment, text)

    save_pairs(tmp_path / "heat.npz", x, y, meta={"name": "heat"})
    assert "meta_json" in describe_file(tmp_path / "heat.npz")
    torch.save({"x": torch.randn(2, 16, 16), "y": torch.randn(2, 16, 16)}, tmp_path / "n.pt")
    text = describe_file(tmp_path / "n.pt")
    assert "(2, 16, 16)" in text and "x: 1 channel on grid (16, 16)" in text

    other = _write_h5(tmp_path / "other.h5", a=np.zeros((2, 3)), b=np.zeros((2, 3)))
    text = describe_file(other)
    assert "a " in text and "(2, 3)" in text and "layout: not recognised" in text


# ---- malformed files ---------------------------------------------------------------------


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        PairFile(tmp_path / "nothere.h5")
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        describe_file(tmp_path / "nothere.h5")
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"'\.csv'.*\.h5, \.hdf5, \.npz, \.npy, \.pt"):
        PairFile(tmp_path / "data.csv")


@pytest.mark.parametrize("suffix", [".h5", ".npz", ".pt"])
def test_missing_key_names_key_and_keys_present(tmp_path, suffix):
    x, y = _pairs(n=2)
    path = save_pairs(tmp_path / f"d{suffix}", x, y)
    with pytest.raises(MissingKeyError, match=r"'inputs'.*present: .*'x', .*'y'") as info:
        PairFile(path, x_key="inputs", y_key="y")
    assert isinstance(info.value, ValueError) and isinstance(info.value, KeyError)
    with pytest.raises(ValueError, match=r"'out'.*present"):
        PairFile(path, x_key="x", y_key="out")


def test_missing_y_in_npz_and_pt(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 1, 4)))
    with pytest.raises(MissingKeyError, match=r"no array 'y'; arrays present: 'x'"):
        PairFile(tmp_path / "d.npz")
    torch.save({"x": torch.zeros(2, 4), "u": torch.zeros(2, 4)}, tmp_path / "d.pt")
    with pytest.raises(MissingKeyError, match=r"no key 'y'; keys present: 'x', 'u'"):
        PairFile(tmp_path / "d.pt")
    torch.save({"x": torch.zeros(2, 4), "y": [1, 2]}, tmp_path / "e.pt")
    with pytest.raises(ValueError, match="'y' is a list, not a tensor"):
        PairFile(tmp_path / "e.pt")


@pytest.mark.parametrize("suffix", [".h5", ".npz", ".pt"])
def test_different_sample_counts(tmp_path, suffix):
    x, y = np.zeros((5, 1, 8), np.float32), np.zeros((4, 1, 8), np.float32)
    path = tmp_path / f"d{suffix}"
    if suffix == ".h5":
        _write_h5(path, x=x, y=y)
    elif suffix == ".npz":
        np.savez(path, x=x, y=y)
    else:
        torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, path)
    with pytest.raises(ValueError, match=r"sample counts: 'x' has shape \(5, 1, 8\), 'y' has "
                                         r"shape \(4, 1, 8\)"):
        PairFile(path)


def test_non_numeric_arrays(tmp_path):
    with h5py.File(tmp_path / "s.h5", "w") as file:
        file["x"] = np.zeros((2, 1, 4))
        file.create_dataset("y", data=np.array([b"ab", b"cd"]))
    with pytest.raises(ValueError, match=r"'y' has non-numeric dtype \|S2 \(shape \(2,\)\)"):
        PairFile(tmp_path / "s.h5")
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"'x' has non-numeric dtype object \(shape \(2,\)\)"):
        PairFile(tmp_path / "o.npz")
    np.savez(tmp_path / "u.npz", x=np.zeros((2, 4)), y=np.array([["a"] * 4] * 2))
    with pytest.raises(ValueError, match=r"'y' has non-numeric dtype <U1"):
        PairFile(tmp_path / "u.npz")
    torch.save({"x": torch.zeros(2, 4, dtype=torch.complex64), "y": torch.zeros(2, 4)},
               tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"'x' has non-real dtype torch.complex64 \(shape "
                                         r"\(2, 4\)\)"):
        PairFile(tmp_path / "c.pt")


def test_wrong_ranks(tmp_path):
    _write_h5(tmp_path / "a.h5", x=np.zeros((3, 1, 8, 8)), y=np.zeros((3,)))
    with pytest.raises(ValueError, match=r"'y' has shape \(3,\), served as \(3, 1\)"):
        PairFile(tmp_path / "a.h5")
    _write_h5(tmp_path / "b.h5", x=np.zeros((3, 1, 8, 8)), y=np.zeros((3, 1, 8)))
    with pytest.raises(ValueError, match=r"different grid ranks: 'x' \(3, 1, 8, 8\).*'y' "
                                         r"\(3, 1, 8\)"):
        PairFile(tmp_path / "b.h5")
    _write_h5(tmp_path / "c.h5", tensor=np.zeros((3, 8)))
    with pytest.raises(ValueError, match=r"'tensor' has shape \(3, 8\); PDEBench time series"):
        PairFile(tmp_path / "c.h5")
    _write_h5(tmp_path / "d.h5", tensor=np.zeros((3, 1, 8)))
    with pytest.raises(ValueError, match=r"'tensor' \(3, 1, 8\) has 1 time step"):
        PairFile(tmp_path / "d.h5")


def test_corrupt_files(tmp_path):
    path = save_pairs(tmp_path / "t.h5", *_pairs(n=8, grid=(16, 16)))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError, match=r"truncated.h5: not a readable HDF5 file"):
        PairFile(truncated)
    with pytest.raises(DataFileError, match="truncated.h5"):
        describe_file(truncated)

    (tmp_path / "text.npz").write_text("not a zip archive")
    with pytest.raises(DataFileError, match=r"text.npz: not a readable .npz archive .*none of "):
        PairFile(tmp_path / "text.npz")
    (tmp_path / "h5.npz").write_bytes(data)
    with pytest.raises(DataFileError, match=r"h5.npz: .*looks like an HDF5 file"):
        PairFile(tmp_path / "h5.npz")

    (tmp_path / "junk.pt").write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(DataFileError, match=r"junk.pt: not a readable torch file"):
        PairFile(tmp_path / "junk.pt")
    torch.save({"x": torch.zeros(2, 4), "y": _Unsafe()}, tmp_path / "code.pt")
    with pytest.raises(DataFileError, match=r"code.pt: not a readable torch file with "
                                            r"weights_only=True \(weights_only refused it: "
                                            r"Unsupported global.*_Unsafe"):
        PairFile(tmp_path / "code.pt")
    torch.save([torch.zeros(2, 4)], tmp_path / "list.pt")
    with pytest.raises(DataFileError, match=r"list.pt: expected a dict.*got a list"):
        PairFile(tmp_path / "list.pt")
    (tmp_path / "bad_x.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    np.save(tmp_path / "bad_y.npy", np.zeros((2, 1, 4)))
    with pytest.raises(DataFileError, match=r"bad_x.npy: not a readable .npy array"):
        PairFile(tmp_path / "bad_x.npy")


class _Unsafe:
    """An object ``weights_only`` loading refuses to unpickle."""


# ---- a format registered from outside the package ----------------------------------------


class _JsonReader(FormatReader):
    """A format defined here, as docs/data.md shows: a JSON object of nested lists."""

    format = "json"
    suffixes = (".json",)

    def __init__(self, path):
        super().__init__(path)
        self._data = {k: np.asarray(v) for k, v in json.loads(path.read_text()).items()}

    def arrays(self):
        return {k: ArrayInfo(v.shape, v.dtype) for k, v in self._data.items()}

    def load(self, key):
        return self._data[key]


def test_registered_format_reads_like_the_built_in_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "_READERS", dict(formats._READERS))  # undone after the test
    x, y = _pairs(n=3, cx=2, cy=1, grid=(5,))
    path = tmp_path / "pairs.json"
    u = torch.arange(60.0).view(3, 4, 5)  # a time series (n, T, X)
    path.write_text(json.dumps({"x": x.tolist(), "y": y[:, 0].tolist(), "u": u.tolist()}))
    (tmp_path / "pairs.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"unknown data file extension '\.json'"):
        PairFile(path)

    assert register_format(_JsonReader) is _JsonReader
    data = PairFile(path)
    assert (data.format, data.layout, len(data)) == ("json", "pairs", 3)
    assert data.shapes == {"x": (3, 2, 5), "y": (3, 1, 5)}  # y's missing channel dim added
    batch = data.take([2, 0, 2])
    assert torch.equal(batch["x"], x[[2, 0, 2]]) and torch.equal(batch["y"], y[[2, 0, 2]])
    assert torch.equal(pickle.loads(pickle.dumps(data))[1][0], x[1])
    text = describe_file(path)
    for fragment in ("format: json", "x                    float64  (3, 2, 5)", "samples: 3",
                     "y: 1 channel on grid (5,)"):
        assert fragment in text, (fragment, text)
    with pytest.raises(MissingKeyError, match=r"no array 'v'; arrays present: 'x', 'y', 'u'"):
        PairFile(path, x_key="v")
    series = PairFile(path, x_key="u", history=3)
    assert series.layout == "series" and torch.equal(series.take([1])["y"], u[1:2, 3:4])
    with pytest.raises(ValueError, match=r"supported: \.h5, .*\.pth, \.json or a directory"):
        PairFile(tmp_path / "pairs.csv")
    with pytest.raises(TypeError, match="FormatReader subclass"):
        register_format(dict)
