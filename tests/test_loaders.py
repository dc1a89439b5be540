"""create_data_loader over generated and file datasets: resolution, windows, normalisation.

The oracles are the underlying tensors themselves (read back from the cache or the file) and
statistics computed here with plain torch; the Trainer tests check that a normalised run
decodes its outputs and keeps the normalizer through a checkpoint.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nol_fast.data import create_data_loader, register_dataset
from nol_fast.data.files import save_pairs
from nol_fast.data.normalization import DataNormalizer, UnitGaussian
from nol_fast.training import Trainer


@register_dataset("test_series", resolution=8, time_series=True, n_times=6)
def build_series(n_samples: int, seed: int, resolution: int, n_times: int):
    """Trajectories whose values encode (sample, time, point), so windows are checkable."""
    s = torch.arange(n_samples, dtype=torch.float64).view(-1, 1, 1)
    t = torch.arange(n_times, dtype=torch.float64).view(1, -1, 1)
    p = torch.arange(resolution, dtype=torch.float64).view(1, 1, -1)
    return {"trajectories": 1000 * s + 100 * t + p}


def all_of(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


HEAT = {"dataset": "heat", "n_train": 24, "n_val": 8, "n_test": 8, "batch_size": 8,
        "shuffle": False, "cache_dir": False}


def test_normalized_inputs_use_training_statistics_only():
    config = {**HEAT, "normalize": True, "resolution": 16}
    raw = {**HEAT, "resolution": 16}
    train = create_data_loader(config, "train")
    val = create_data_loader(config, "val")
    x_raw, y_raw = all_of(create_data_loader(raw, "train"))
    x_enc, y = all_of(train)
    # Oracle: per-channel mean/std of the raw training inputs.
    mean = x_raw.double().mean(dim=(0, 2, 3))
    std = x_raw.double().std(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(train.normalizer.x.mean.double(), mean, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(train.normalizer.x.std.double(), std, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(x_enc, ((x_raw - mean.float().view(1, -1, 1, 1))
                                       / (std.float().view(1, -1, 1, 1) + 1e-6)))
    torch.testing.assert_close(y, y_raw)  # targets stay physical
    # The val loader encodes with the training statistics, not its own.
    torch.testing.assert_close(val.normalizer.x.mean, train.normalizer.x.mean)
    x_val_raw, _ = all_of(create_data_loader(raw, "val"))
    torch.testing.assert_close(all_of(val)[0], train.normalizer.encode_input(x_val_raw))


def test_resolution_subsamples_the_generated_grid():
    fine = all_of(create_data_loader({**HEAT, "resolution": 32}, "train"))
    coarse = all_of(create_data_loader({**HEAT, "resolution": 8, "generate_resolution": 32},
                                       "train"))
    for a, b in zip(coarse, fine, strict=True):
        torch.testing.assert_close(a, b[..., ::4, ::4])
    with pytest.raises(ValueError, match="cannot subsample a grid of 32 points to 12"):
        create_data_loader({**HEAT, "resolution": 12, "generate_resolution": 32}, "train")


def test_time_series_windows():
    config = {"dataset": "test_series", "n_train": 3, "n_val": 1, "n_test": 1, "batch_size": 2,
              "shuffle": False, "cache_dir": False, "history": 2, "horizon": 3}
    x, y = all_of(create_data_loader(config, "val"))
    assert x.shape == (1, 2, 8) and y.shape == (1, 3, 8)
    sample = 3  # the val split starts after 3 training trajectories
    assert x[0, :, 0].tolist() == [1000 * sample + 0, 1000 * sample + 100]
    assert y[0, :, 1].tolist() == [1000 * sample + 100 * t + 1 for t in (2, 3, 4)]
    with pytest.raises(ValueError, match="history .* horizon"):
        create_data_loader({**config, "history": 4, "horizon": 3}, "train")
    with pytest.raises(ValueError, match="unknown data option.*'history'"):
        create_data_loader({**HEAT, "history": 2}, "train")


def test_file_dataset_serves_the_file_and_fits_on_its_training_split(tmp_path):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20, 2, 9, 9, generator=generator) * 3 + 1
    y = torch.randn(20, 1, 9, 9, generator=generator)
    path = tmp_path / "pairs.h5"
    save_pairs(path, x, y)
    config = {"dataset": "file", "path": str(path), "n_train": 12, "n_val": 4, "n_test": 4,
              "batch_size": 5, "shuffle": False, "resolution": 5, "normalize": True}
    test = create_data_loader(config, "test")
    norm = UnitGaussian.fit(x[:12, :, ::2, ::2])
    x_test, y_test = all_of(test)
    torch.testing.assert_close(test.normalizer.x.mean, norm.mean)
    torch.testing.assert_close(x_test, norm.encode(x[16:, :, ::2, ::2]))
    torch.testing.assert_close(y_test, y[16:, :, ::2, ::2])
    with pytest.raises(ValueError, match="holds 20 samples, but n_train \\+ n_val \\+ n_test"):
        create_data_loader({**config, "n_train": 30}, "train")
    with pytest.raises(ValueError, match="needs the data option 'path'"):
        create_data_loader({"dataset": "file"}, "train")


class Doubler(nn.Module):
    """A fixed linear model, so predictions are known in closed form."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return self.scale * x


def test_unit_gaussian_against_statistics_computed_here():
    generator = torch.Generator().manual_seed(4)
    # Channels of very different scales; the last one's spread is close to the 1e-6 guard.
    scales = torch.tensor([1.0, 300.0, 2e-6], dtype=torch.float64).view(1, 3, 1, 1)
    data = (torch.randn(10, 3, 5, 4, generator=generator, dtype=torch.float64) * scales
            + torch.tensor([0.5, -40.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1))
    data = data.float().double()  # the values the float32 normalizer sees
    mean = data.mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    std = data.std(dim=(0, 2, 3), unbiased=False).view(1, 3, 1, 1)
    norm = UnitGaussian.fit(data.float())
    encoded = norm.encode(data.float())
    torch.testing.assert_close(encoded.double(), (data - mean) / (std + 1e-6), rtol=1e-4,
                               atol=1e-4)
    z = torch.randn(2, 3, 6, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(norm.decode(z.float()).double(),
                               z * (std.view(1, 3, 1) + 1e-6) + mean.view(1, 3, 1),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norm.decode(encoded), data.float(), rtol=1e-5, atol=1e-6)
    assert norm.decode(z.bfloat16()).dtype == torch.float32


def test_trainer_decodes_outputs_and_checkpoints_the_normalizer(tmp_path):
    config = {**HEAT, "normalize": True, "resolution": 8}
    train, val = create_data_loader(config, "train"), create_data_loader(config, "val")
    model = Doubler()
    trainer = Trainer(model, train, val, torch.optim.SGD(model.parameters(), lr=0.0))
    result = trainer.evaluate(val, return_predictions=True)
    x_enc, y = all_of(val)
    # Oracle: the training targets' statistics, computed here.
    y_train = all_of(create_data_loader({**HEAT, "resolution": 8}, "train"))[1].double()
    y_mean = y_train.mean(dim=(0, 2, 3)).view(1, -1, 1, 1)
    y_std = y_train.std(dim=(0, 2, 3), unbiased=False).view(1, -1, 1, 1)
    expected = (2.0 * x_enc * (y_std + 1e-6) + y_mean).float()
    torch.testing.assert_close(result["predictions"], expected)
    torch.testing.assert_close(torch.tensor(result["loss"]),
                               torch.mean((expected - y) ** 2).float(), rtol=1e-5, atol=1e-8)
    path = tmp_path / "ckpt.pt"
    trainer.save_checkpoint(str(path))

    plain = create_data_loader({**HEAT, "resolution": 8}, "train")
    other = Doubler()
    fresh = Trainer(other, plain, create_data_loader({**HEAT, "resolution": 8}, "val"),
                    torch.optim.SGD(other.parameters(), lr=0.0))
    assert fresh.normalizer is None
    fresh.load_checkpoint(str(path))
    assert isinstance(fresh.normalizer, DataNormalizer)
    torch.testing.assert_close(fresh.normalizer.y.std.double(), y_std.flatten())
    torch.testing.assert_close(fresh.evaluate(val)["loss"], result["loss"])
