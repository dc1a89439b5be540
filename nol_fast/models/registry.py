"""Model registry: build a model from its name and a config section.

Config files and checkpoints name a model by a string (``model_type: fno``) and give its
options as a mapping. :func:`register_model` maps names to classes; :func:`create_model` checks
the options against the class constructor, so a misspelt option fails with the list of valid
ones instead of deep inside ``__init__``, and records the plain-data ``model_config`` that
rebuilds the model from a checkpoint.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from nol_fast.config import section_to_dict
from nol_fast.models.base import NeuralOperatorBase

ModelClass = TypeVar("ModelClass", bound=type[NeuralOperatorBase])

# name or alias -> (canonical name, class)
_REGISTRY: dict[str, tuple[str, type[NeuralOperatorBase]]] = {}

# The config key that names the model rather than configures it.
_TYPE_KEY = "model_type"


def register_model(name: str, *aliases: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator registering a :class:`NeuralOperatorBase` subclass under names.

    Parameters
    ----------
    name : str
        Canonical name, recorded as ``model_config['model_type']``.
    *aliases : str
        Further names accepted by :func:`create_model`.

    Examples
    --------
    >>> from nol_fast.models import NeuralOperatorBase, register_model
    >>> @register_model("my_operator", "my_op")
    ... class MyOperator(NeuralOperatorBase):
    ...     def __init__(self, width: int = 4):
    ...         super().__init__()
    ...         self.in_channels, self.out_channels, self.n_dims = 1, 1, 1
    """

    def decorator(cls: ModelClass) -> ModelClass:
        if not (isinstance(cls, type) and issubclass(cls, NeuralOperatorBase)):
            raise TypeError(f"register_model('{name}') expects a NeuralOperatorBase subclass, "
                            f"got {cls!r}")
        for key in (name, *aliases):
            if key in _REGISTRY and _REGISTRY[key][1] is not cls:
                raise ValueError(f"model name '{key}' is already registered to "
                                 f"{_REGISTRY[key][1].__name__}")
        for key in (name, *aliases):
            _REGISTRY[key] = (name, cls)
        return cls

    return decorator


def available_models() -> list[str]:
    """Registered model names and aliases, sorted.

    Examples
    --------
    >>> "fno" in available_models()
    True
    """
    return sorted(_REGISTRY)


def _plain(value: Any) -> Any:
    """Return ``value`` with tuples turned into lists, recursively, so it is plain data."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _check_options(name: str, cls: type, options: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` for options the constructor of ``cls`` does not accept or needs."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              inspect.Parameter.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        # A 'name' key is a likely stand-in for model_type: say where the model is chosen.
        hint = f" (the model is chosen by '{_TYPE_KEY}')" if "name" in unknown else ""
        raise TypeError(f"model '{name}' got unknown option(s) {', '.join(map(repr, unknown))}"
                        f"{hint}; accepted options: {', '.join(accepted)}")
    missing = [p.name for p in params
               if p.name in accepted and p.default is inspect.Parameter.empty
               and p.name not in options]
    if missing:
        raise TypeError(f"model '{name}' requires option(s) {', '.join(map(repr, missing))}; "
                        f"accepted options: {', '.join(accepted)}")


def create_model(model_type: str, config: Mapping[str, Any] | object | None = None
                 ) -> NeuralOperatorBase:
    """Build a registered model from its name and options.

    Parameters
    ----------
    model_type : str
        A name or alias from :func:`available_models`.
    config : mapping or object with ``__dict__``
        Constructor keyword arguments, e.g. the ``model`` section of a config file. The key
        ``model_type`` is ignored, so ``config.model.__dict__`` can be passed as is; any other
        key the model does not take (``name`` included) is an error.

    Returns
    -------
    NeuralOperatorBase
        The model, with ``model_config = {'model_type': canonical_name, **options}`` as plain
        data (tuples become lists).

    Raises
    ------
    ValueError
        For an unknown ``model_type``, listing the registered names.
    TypeError
        For an option the model does not accept, or a required one that is missing, listing
        the accepted options.

    Examples
    --------
    >>> model = create_model("fno", {"model_type": "fno", "n_modes": (8, 8)})
    >>> model.model_config["n_modes"]
    [8, 8]
    """
    # Imported here: nol_fast.config loads the training package, which may import models.
    if model_type not in _REGISTRY:
        raise ValueError(f"unknown model {model_type!r}; choose one of: "
                         f"{', '.join(available_models())}")
    name, cls = _REGISTRY[model_type]
    options = {key: value for key, value in section_to_dict(config).items() if key != _TYPE_KEY}
    _check_options(name, cls, options)
    model = cls(**options)
    model.model_config = {"model_type": name, **_plain(options)}
    return model
