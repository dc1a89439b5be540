"""PDE datasets for operator learning and the loaders that serve them.

``create_data_loader(config.data, 'train')`` builds a DataLoader from the ``data`` section of
a config file. The heat equation dataset (:func:`generate_heat`) is generated from Gaussian
random fields (:func:`sample_grf`) and cached on disk (:func:`cached`).
"""

from nol_fast.data.cache import cached, default_cache_dir
from nol_fast.data.grf import sample_grf
from nol_fast.data.heat import generate_heat, solve_heat
from nol_fast.data.loaders import available_datasets, create_data_loader, register_dataset

__all__ = [
    "available_datasets",
    "cached",
    "create_data_loader",
    "default_cache_dir",
    "generate_heat",
    "register_dataset",
    "sample_grf",
    "solve_heat",
]
