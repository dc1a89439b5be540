"""Experiment configuration files: ``Config.load('config.yaml')``.

A config file has up to four sections::

    model:        # keyword arguments of create_model, plus ``model_type``
      model_type: fno
      n_modes: [12, 12]
    data:         # keys of nol_fast.data.create_data_loader
      dataset: heat
    training:     # fields of TrainingConfig
      epochs: 20
    parallelism:  # keys of nol_fast.distributed.strategies.create_parallelism_strategy
      strategy: ddp

``model``, ``data`` and ``parallelism`` are free-form :class:`Section` objects: their keys are
checked by the factory that consumes them, which knows what it accepts. ``training`` is a
:class:`~nol_fast.training.config.TrainingConfig`, so a misspelt field is caught on load.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from nol_fast.training.config import TrainingConfig

SECTIONS = ("model", "data", "training", "parallelism")


class ConfigError(ValueError):
    """A config file is missing, unreadable or does not have the expected layout."""


class ConfigFileNotFoundError(FileNotFoundError, ConfigError):
    """A config file does not exist: a :class:`ConfigError`, and also the standard
    ``FileNotFoundError`` (with ``errno`` and ``filename``) for code that catches that."""


class Section(SimpleNamespace):
    """A free-form config section whose keys are attributes (``config.model.model_type``).

    ``vars(section)`` and ``section.__dict__`` give the plain dict, which is what
    ``create_model(config.model.model_type, config.model.__dict__)`` passes on.
    """

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def section_to_dict(section: Any) -> dict[str, Any]:
    """Return a config section (Mapping, :class:`Section`, dataclass or object) as a dict."""
    if section is None:
        return {}
    if isinstance(section, Mapping):
        return dict(section)
    if hasattr(section, "__dataclass_fields__"):
        return asdict(section)
    if hasattr(section, "__dict__"):
        return dict(vars(section))
    raise TypeError(f"expected a mapping or a config section, got {type(section).__name__}")


@dataclass
class Config:
    """The four sections of an experiment config file."""

    model: Section = field(default_factory=Section)
    data: Section = field(default_factory=Section)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    parallelism: Section = field(default_factory=Section)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "config") -> Config:
        """Build a Config from a nested dict, rejecting unknown sections and training fields."""
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}"
            )
        unknown = sorted(set(raw) - set(SECTIONS))
        if unknown:
            raise ConfigError(
                f"{source}: unknown section(s) {', '.join(map(repr, unknown))}; "
                f"choose from: {', '.join(SECTIONS)}"
            )
        sections: dict[str, Any] = {}
        for name in SECTIONS:
            value = raw.get(name) or {}
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{source}: section '{name}' must be a mapping, got {type(value).__name__}"
                )
            sections[name] = value
        try:
            training = TrainingConfig.from_dict(sections["training"])
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: section 'training': {err}") from None
        return cls(
            model=Section(**sections["model"]),
            data=Section(**sections["data"]),
            training=training,
            parallelism=Section(**sections["parallelism"]),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Config:
        """Read a YAML (``.yaml``/``.yml``) or JSON (``.json``) config file.

        Examples
        --------
        >>> config = Config.load("examples/config.yaml")  # doctest: +SKIP
        >>> config.training.epochs  # doctest: +SKIP
        5
        """
        path = Path(path)
        if not path.exists():
            raise ConfigFileNotFoundError(errno.ENOENT, "config file not found", str(path))
        if not path.is_file():
            raise ConfigError(f"config file {path} is not a file")
        text = path.read_text()
        suffix = path.suffix.lower()
        try:
            if suffix == ".json":
                raw = json.loads(text)
            elif suffix in (".yaml", ".yml"):
                raw = yaml.safe_load(text)
            else:
                raise ConfigError(
                    f"config file {path} has suffix '{suffix}'; use .yaml, .yml or .json"
                )
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise ConfigError(f"config file {path} is malformed: {err}") from None
        return cls.from_dict(raw or {}, source=str(path))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return the config as nested plain dicts (the layout :meth:`load` reads)."""
        return {name: section_to_dict(getattr(self, name)) for name in SECTIONS}

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as YAML or JSON, chosen by the file suffix."""
        path = Path(path)
        data = self.to_dict()
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(data, indent=2) + "\n")
        else:
            path.write_text(yaml.safe_dump(data, sort_keys=False))
