"""PDE datasets for operator learning and the loaders that serve them.

``create_data_loader(config.data, 'train')`` builds a DataLoader from the ``data`` section of
a config file. The generated datasets (:mod:`nol_fast.data.datasets`: heat, Darcy, Burgers,
Navier-Stokes) come from documented solvers fed by Gaussian random fields
(:func:`sample_grf`) and are cached on disk (:func:`cached`); users' files are read by
:class:`PairFile` (HDF5 in PDEBench's or our layout, ``.npz``/``.npy``, neuraloperator's
``.pt``). Inputs can be normalised with statistics of the training split
(:class:`DataNormalizer`).
"""

from nol_fast.data.cache import cached, default_cache_dir
from nol_fast.data.files import PairFile, describe_file, save_pairs
from nol_fast.data.grf import sample_grf
from nol_fast.data.heat import generate_heat, solve_heat
from nol_fast.data.loaders import create_data_loader
from nol_fast.data.normalization import DataNormalizer, UnitGaussian
from nol_fast.data.registry import available_datasets, register_dataset

__all__ = [
    "DataNormalizer",
    "PairFile",
    "UnitGaussian",
    "available_datasets",
    "cached",
    "create_data_loader",
    "default_cache_dir",
    "describe_file",
    "generate_heat",
    "register_dataset",
    "sample_grf",
    "save_pairs",
    "solve_heat",
]
