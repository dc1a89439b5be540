"""Neural operator models and the registry that builds them from config files.

``create_model(config.model.model_type, config.model.__dict__)`` builds any registered model;
:class:`FNO` is registered as ``'fno'`` and ``'fourier_neural_operator'``. The functions of
:mod:`nol_fast.models.interop` convert models and checkpoints from and to neuraloperator.
"""

from nol_fast.models.base import NeuralOperatorBase
from nol_fast.models.fno import FNO
from nol_fast.models.interop import (
    fno_from_neuralop,
    fno_to_neuralop,
    spectral_conv_from_neuralop,
    spectral_conv_to_neuralop,
    state_dict_from_neuralop,
    state_dict_to_neuralop,
)
from nol_fast.models.registry import available_models, create_model, register_model
from nol_fast.models.spectral_conv import SpectralConv

__all__ = [
    "FNO",
    "NeuralOperatorBase",
    "SpectralConv",
    "available_models",
    "create_model",
    "fno_from_neuralop",
    "fno_to_neuralop",
    "register_model",
    "spectral_conv_from_neuralop",
    "spectral_conv_to_neuralop",
    "state_dict_from_neuralop",
    "state_dict_to_neuralop",
]
