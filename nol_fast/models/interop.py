"""Convert FNOs, SpectralConvs and checkpoints between nol_fast and neuraloperator 2.0.

The architectures agree layer for layer (see ``docs/models.md``), so conversion renames the
parameters and changes the layout of three of them:

* spectral weights: neuraloperator stores the kept modes of every non-last grid dimension
  centred (``fftshift`` order: frequency ``-floor(m/2)`` first); nol_fast stores them in FFT
  order (frequency 0 first). ``ifftshift`` and ``fftshift`` along those dims convert;
* spectral biases: ``(channels, 1, ..., 1)`` there, ``(channels,)`` here;
* soft-gating weights: ``(1, channels, 1, ..., 1)`` there, ``(channels,)`` here.

neuraloperator is optional: it is imported only inside the functions that need it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from nol_fast.models.fno import FNO
from nol_fast.models.layers.channel_mlp import ACTIVATIONS
from nol_fast.models.layers.skip import SKIP_KINDS
from nol_fast.models.spectral_conv import SpectralConv

# (neuraloperator name, nol_fast name, kind); {i}: block, {j}: layer, {p}: weight or bias.
_NAMES = [
    ("lifting.fcs.{j}.{p}", "lifting.layers.{j}.{p}", "same"),
    ("projection.fcs.{j}.{p}", "projection.layers.{j}.{p}", "same"),
    ("fno_blocks.convs.{i}.weight.tensor", "blocks.{i}.spectral.weight", "spectral_weight"),
    ("fno_blocks.convs.{i}.bias", "blocks.{i}.spectral.bias", "spectral_bias"),
    ("fno_blocks.fno_skips.{i}.conv.weight", "blocks.{i}.fno_skip.weight", "linear_skip"),
    ("fno_blocks.fno_skips.{i}.weight", "blocks.{i}.fno_skip.weight", "gate"),
    ("fno_blocks.channel_mlp.{i}.fcs.{j}.{p}", "blocks.{i}.channel_mlp.layers.{j}.{p}", "same"),
    ("fno_blocks.channel_mlp_skips.{i}.conv.weight", "blocks.{i}.channel_mlp_skip.weight",
     "linear_skip"),
    ("fno_blocks.channel_mlp_skips.{i}.weight", "blocks.{i}.channel_mlp_skip.weight", "gate"),
]

# neuraloperator FNO options that must keep these values.
_FIXED_OPTIONS: dict[str, Any] = {
    "norm": None, "complex_data": False, "channel_mlp_dropout": 0,
    "fno_block_precision": "full", "stabilizer": None, "factorization": None,
    "separable": False, "preactivation": False,
}


def _pattern(template: str) -> re.Pattern[str]:
    regex = re.escape(template)
    for field, group in (("i", r"\d+"), ("j", r"\d+"), ("p", "weight|bias")):
        regex = regex.replace(re.escape("{" + field + "}"), f"(?P<{field}>{group})")
    return re.compile(regex)


_PATTERNS = [(_pattern(theirs), _pattern(ours), theirs, ours, kind)
             for theirs, ours, kind in _NAMES]


def _rename(key: str, value: torch.Tensor, from_neuralop: bool) -> tuple[str, str] | None:
    """The other library's name for ``key`` and the entry kind, or ``None`` if it has none.

    Linear and soft-gating skips share our names; the weight's shape tells them apart.
    """
    for theirs, ours, theirs_name, ours_name, kind in _PATTERNS:
        source, target = (theirs, ours_name) if from_neuralop else (ours, theirs_name)
        match = source.fullmatch(key)
        if match and (from_neuralop or kind not in ("gate", "linear_skip")
                      or (kind == "gate") == (value.dim() == 1)):
            return target.format(**match.groupdict()), kind
    return None


def _import_neuralop() -> Any:
    try:
        import neuralop
    except ImportError as err:
        raise ImportError("converting to or from neuraloperator needs the neuraloperator "
                          "package: pip install nol-fast[interop]") from err
    return neuralop


def _shift_modes(weight: torch.Tensor, to_fft_order: bool) -> torch.Tensor:
    """Reorder a spectral weight ``(in, out, *modes)`` along its non-last mode dims.

    Centred (neuraloperator) to FFT order (nol_fast) with ``ifftshift``, back with ``fftshift``;
    the two differ for odd mode counts.
    """
    dims = tuple(range(2, weight.dim() - 1))
    if not dims:
        return weight
    shift = torch.fft.ifftshift if to_fft_order else torch.fft.fftshift
    return shift(weight, dim=dims)


def state_dict_from_neuralop(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Convert the ``state_dict`` of a neuraloperator ``FNO`` into one of :class:`FNO`.

    The ``_metadata`` entry neuraloperator adds is dropped. Load the result into an
    :class:`FNO` built with the same options (``FNO.from_neuralop(state_dict)`` does both).

    Raises
    ------
    ValueError
        For an entry with no counterpart here (factorized weights, norms, ...).

    Examples
    --------
    >>> import neuralop
    >>> sd = state_dict_from_neuralop(neuralop.models.FNO((16, 16), 1, 1, 32).state_dict())
    >>> FNO((16, 16), hidden_channels=32).load_state_dict(sd)
    <All keys matched successfully>
    """
    converted = {}
    for key, value in state_dict.items():
        if key == "_metadata":
            continue
        renamed = _rename(key, value, from_neuralop=True)
        if renamed is None:
            raise ValueError(f"neuraloperator state_dict entry {key!r} has no counterpart in "
                             "nol_fast's FNO (factorized weights, norms and other options "
                             "than the FNO defaults listed in docs/models.md are unsupported)")
        name, kind = renamed
        if kind == "spectral_weight":
            value = _shift_modes(value, to_fft_order=True)
        elif kind in ("spectral_bias", "gate"):
            value = value.reshape(-1)
        converted[name] = value
    return converted


def state_dict_to_neuralop(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert the ``state_dict`` of an :class:`FNO` into one of neuraloperator's ``FNO``.

    The inverse of :func:`state_dict_from_neuralop` (without ``_metadata``).

    Examples
    --------
    >>> sd = state_dict_to_neuralop(FNO((8, 8)).state_dict())
    >>> sd["fno_blocks.convs.0.bias"].shape
    torch.Size([32, 1, 1])
    """
    n_dims = next(value.dim() - 2 for key, value in state_dict.items()
                  if key.endswith("spectral.weight"))
    converted = {}
    for key, value in state_dict.items():
        renamed = _rename(key, value, from_neuralop=False)
        if renamed is None:
            raise ValueError(f"FNO state_dict entry {key!r} has no counterpart in "
                             "neuraloperator's FNO")
        name, kind = renamed
        if kind == "spectral_weight":
            value = _shift_modes(value, to_fft_order=False)
        elif kind == "spectral_bias":
            value = value.reshape(-1, *([1] * n_dims))
        elif kind == "gate":
            value = value.reshape(1, -1, *([1] * n_dims))
        converted[name] = value
    return converted


def _check_neuralop_conv(conv: nn.Module, allow_scaling: bool) -> None:
    """Raise ``ValueError`` unless ``conv`` is a dense neuraloperator SpectralConv we match."""
    neuralop = _import_neuralop()
    if type(conv) is not neuralop.layers.spectral_convolution.SpectralConv:
        raise ValueError(f"expected a neuraloperator SpectralConv, got {type(conv).__name__}")
    options = {"factorization": None, "separable": False, "complex_data": False,
               "fno_block_precision": "full", "fft_norm": "forward"}
    if not allow_scaling:
        options["resolution_scaling_factor"] = None
    for name, accepted in options.items():
        if getattr(conv, name) != accepted:
            raise ValueError(f"unsupported neuraloperator SpectralConv option "
                             f"{name}={getattr(conv, name)!r}; supported: {accepted!r}")
    if list(conv.max_n_modes) != list(conv.n_modes):
        raise ValueError(f"unsupported neuraloperator SpectralConv option max_n_modes="
                         f"{conv.max_n_modes!r}; supported: equal to n_modes {conv.n_modes!r}")


def spectral_conv_from_neuralop(module: nn.Module) -> SpectralConv:
    """Build the :class:`SpectralConv` equal to a dense neuraloperator ``SpectralConv``.

    neuraloperator keeps only ``n_modes[-1] // 2 + 1`` of the last dimension's modes, so the
    last entry of the returned ``n_modes`` is the smallest even count with that many (or 1).

    Raises
    ------
    ValueError
        For factorized or separable weights, complex data, reduced precision, a
        ``max_n_modes`` above ``n_modes``, another ``fft_norm`` or a resolution scaling.

    Examples
    --------
    >>> from neuralop.layers.spectral_convolution import SpectralConv as Theirs
    >>> conv = spectral_conv_from_neuralop(Theirs(4, 4, (8, 8)))
    >>> conv.n_modes
    (8, 8)
    """
    _check_neuralop_conv(module, allow_scaling=False)
    weight = module.weight.tensor.detach()
    kept_last = weight.shape[-1]
    n_modes = (*weight.shape[2:-1], 2 * (kept_last - 1) if kept_last > 1 else 1)
    conv = SpectralConv(weight.shape[0], weight.shape[1], n_modes,
                        bias=module.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(_shift_modes(weight, to_fft_order=True))
        if module.bias is not None:
            conv.bias.copy_(module.bias.reshape(-1))
    return conv


def spectral_conv_to_neuralop(conv: SpectralConv) -> nn.Module:
    """Build the neuraloperator ``SpectralConv`` equal to ``conv``.

    Examples
    --------
    >>> theirs = spectral_conv_to_neuralop(SpectralConv(4, 4, (8, 8)))
    >>> type(theirs).__module__
    'neuralop.layers.spectral_convolution'
    """
    neuralop = _import_neuralop()
    theirs = neuralop.layers.spectral_convolution.SpectralConv(
        conv.in_channels, conv.out_channels, conv.n_modes, bias=conv.bias is not None)
    with torch.no_grad():
        theirs.weight.tensor.copy_(_shift_modes(conv.weight.detach(), to_fft_order=False))
        if conv.bias is not None:
            theirs.bias.copy_(conv.bias.reshape(theirs.bias.shape))
    return theirs


def _activation_name(fn: Callable[..., Any]) -> str:
    """Name in ``ACTIVATIONS`` of a neuraloperator ``non_linearity``, or ``ValueError``."""
    modules = {nn.GELU: "gelu", nn.ReLU: "relu", nn.SiLU: "silu", nn.Tanh: "tanh"}
    extra = {torch.nn.functional.tanh: "tanh", torch.relu: "relu"}
    for name, known in ACTIVATIONS.items():
        if fn is known:
            return name
    if fn in extra:
        return extra[fn]
    if type(fn) in modules and getattr(fn, "approximate", "none") == "none":
        return modules[type(fn)]
    raise ValueError(f"unsupported neuraloperator option non_linearity={fn!r}; supported: "
                     "torch.nn.functional.gelu, relu, silu or torch.tanh (or their modules)")


def _positional_embedding(value: Any, n_dims: int) -> bool:
    """Whether a neuraloperator ``positional_embedding`` is the unit grid; else ValueError."""
    if value is None or value == "grid":
        return value == "grid"
    boundaries = getattr(value, "grid_boundaries", None)
    if type(value).__name__ in ("GridEmbeddingND", "GridEmbedding2D") and boundaries is not None \
            and [list(map(float, b)) for b in boundaries] == [[0.0, 1.0]] * n_dims:
        return True
    raise ValueError(f"unsupported neuraloperator option positional_embedding={value!r}; "
                     "supported: 'grid', None, or a grid embedding on [0, 1] per dimension")


def _fno_options(init_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`FNO` constructor options from the recorded arguments of a neuraloperator FNO."""
    neuralop = _import_neuralop()
    signature = inspect.signature(neuralop.models.FNO)
    args = signature.bind(*init_kwargs.get("args", ()),
                          **{k: v for k, v in init_kwargs.items() if k in signature.parameters})
    args.apply_defaults()
    options = dict(args.arguments)
    for name, accepted in _FIXED_OPTIONS.items():
        if options[name] != accepted:
            raise ValueError(f"unsupported neuraloperator FNO option {name}={options[name]!r}; "
                             f"supported: {accepted!r}")
    n_modes = list(options["n_modes"])
    if options["max_n_modes"] is not None and list(options["max_n_modes"]) != n_modes:
        raise ValueError(f"unsupported neuraloperator FNO option max_n_modes="
                         f"{options['max_n_modes']!r}; supported: None")
    if options["conv_module"] is not neuralop.layers.spectral_convolution.SpectralConv:
        raise ValueError(f"unsupported neuraloperator FNO option conv_module="
                         f"{options['conv_module']!r}; supported: SpectralConv")
    skips = {}
    for name in ("channel_mlp_skip", "fno_skip"):
        kind = options[name].lower() if isinstance(options[name], str) else options[name]
        if kind not in SKIP_KINDS:
            raise ValueError(f"unsupported neuraloperator FNO option {name}={options[name]!r}; "
                             f"supported: {', '.join(map(repr, SKIP_KINDS))}")
        skips[name] = kind
    return {
        "n_modes": n_modes,
        "in_channels": options["in_channels"],
        "out_channels": options["out_channels"],
        "hidden_channels": options["hidden_channels"],
        "n_layers": options["n_layers"],
        "lifting_channel_ratio": options["lifting_channel_ratio"],
        "projection_channel_ratio": options["projection_channel_ratio"],
        "positional_embedding": _positional_embedding(options["positional_embedding"],
                                                      len(n_modes)),
        "activation": _activation_name(options["non_linearity"]),
        "use_channel_mlp": options["use_channel_mlp"],
        "channel_mlp_expansion": options["channel_mlp_expansion"],
        **skips,
        "domain_padding": options["domain_padding"],
        "resolution_scaling_factor": options["resolution_scaling_factor"],
    }


def fno_from_neuralop(model: nn.Module | Mapping[str, Any]) -> FNO:
    """Build the :class:`FNO` equal to a neuraloperator ``FNO``.

    Parameters
    ----------
    model : neuralop.models.FNO or its state_dict
        A model, or the ``state_dict()`` of one (neuraloperator records the constructor
        arguments in its ``'_metadata'`` entry).

    Returns
    -------
    FNO
        Same options and weights, in float32 on the CPU, so the same outputs on even grids
        (see ``docs/models.md`` for odd grids).

    Raises
    ------
    ValueError
        Naming the option and its value, for a configuration this library does not build:
        factorized (TFNO) or separable weights, norms, pre-activation, dropout, complex data,
        half precision, stabilizers, other embeddings, activations or skip kinds.
    ImportError
        If neuraloperator is not installed.

    Examples
    --------
    >>> import neuralop
    >>> ours = fno_from_neuralop(neuralop.models.FNO((16, 16), 1, 1, 32))
    >>> ours.n_modes, ours.hidden_channels
    ((16, 16), 32)
    """
    if isinstance(model, Mapping):
        if "_metadata" not in model:
            raise ValueError("a neuraloperator state_dict needs its '_metadata' entry (the "
                             "constructor arguments) to build the model")
        init_kwargs, state_dict = model["_metadata"], model
    else:
        if not hasattr(model, "_init_kwargs"):
            raise ValueError(f"expected a neuraloperator FNO, got {type(model).__name__}")
        if type(model).__name__ != "FNO":
            raise ValueError(f"unsupported neuraloperator model {type(model).__name__}; "
                             "supported: FNO with dense weights")
        for conv in model.fno_blocks.convs:
            _check_neuralop_conv(conv, allow_scaling=True)
        init_kwargs, state_dict = model._init_kwargs, model.state_dict()
    ours = FNO(**_fno_options(init_kwargs))
    ours.load_state_dict(state_dict_from_neuralop(state_dict))
    return ours


def fno_to_neuralop(model: FNO) -> nn.Module:
    """Build the neuraloperator ``FNO`` equal to ``model`` (float32, on the CPU).

    Examples
    --------
    >>> theirs = fno_to_neuralop(FNO((16, 16), hidden_channels=32))
    >>> type(theirs).__name__, theirs.hidden_channels
    ('FNO', 32)
    """
    neuralop = _import_neuralop()
    factors = model.resolution_scaling_factor
    if factors is not None and len({f for layer in factors for f in layer}) == 1:
        factors = factors[0][0]
    elif factors is not None:
        factors = [list(layer) for layer in factors]
    theirs = neuralop.models.FNO(
        tuple(model.n_modes), model.in_channels, model.out_channels, model.hidden_channels,
        n_layers=model.n_layers,
        lifting_channel_ratio=model.lifting_channel_ratio,
        projection_channel_ratio=model.projection_channel_ratio,
        positional_embedding="grid" if model.positional_embedding else None,
        non_linearity=ACTIVATIONS[model.activation],
        use_channel_mlp=model.use_channel_mlp,
        channel_mlp_expansion=model.channel_mlp_expansion,
        channel_mlp_skip=model.channel_mlp_skip,
        fno_skip=model.fno_skip,
        domain_padding=None if model.domain_padding is None else list(model.domain_padding),
        resolution_scaling_factor=factors,
    )
    theirs.load_state_dict(state_dict_to_neuralop(model.state_dict()))
    return theirs
