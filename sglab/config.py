"""Dataclass configs checked where they enter: types and ranges, each error naming the field.

A config declares its constraints next to its defaults::

    @dataclass
    class Example:
        steps: int = spec(1000, ge=1)
        lr: float = spec(3e-4, gt=0)
        kind: str = spec("mlp", choices=("linear", "mlp"))

and :func:`check_fields` raises :class:`ConfigError` for the first field whose value has the
wrong type (``"3"`` for an int, ``2.5`` for an int, ``True`` for a number) or lies out of range,
with the field, the value and what would be accepted. :func:`from_dict` builds a config from a
mapping (a JSON file, a saved ``config.json``) and names unknown fields.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from sglab.errors import UsageError


class ConfigError(UsageError):
    """A configuration value that cannot work; the message names the field, the value and what is accepted."""


def spec(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, ge: float | None = None,
         gt: float | None = None, le: float | None = None, choices: tuple | None = None) -> Any:
    """A dataclass field with a default and the range or choices its value must respect."""
    rules = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("choices", choices)) if v is not None}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=rules)
    return dataclasses.field(default=default, metadata=rules)


def _type_name(kind: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(k) for k in typing.get_args(kind))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(kind)[0]).removeprefix('an ').removeprefix('a ')}s"
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _matches(value: Any, kind: Any) -> bool:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, k) for k in typing.get_args(kind))
    if origin is list:
        return isinstance(value, list) and all(_matches(v, typing.get_args(kind)[0]) for v in value)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is type(None):
        return value is None
    if kind is Any:
        return True
    return isinstance(value, kind)


def _range_fault(value: Any, rules: dict) -> str | None:
    if "choices" in rules and value not in rules["choices"]:
        return "must be one of " + ", ".join(map(str, rules["choices"]))
    numbers = value if isinstance(value, list) else [value]
    for v in numbers:
        if not isinstance(v, (int, float)):
            continue
        if "ge" in rules and not v >= rules["ge"]:
            return f"must be >= {rules['ge']:g}"
        if "gt" in rules and not v > rules["gt"]:
            return f"must be > {rules['gt']:g}"
        if "le" in rules and not v <= rules["le"]:
            return f"must be <= {rules['le']:g}"
    return None


def check_fields(config: Any, where: str = "config field") -> Any:
    """Raise :class:`ConfigError` naming the first field of dataclass ``config`` with a wrong type or value; returns it."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind = hints.get(f.name, Any)
        if not _matches(value, kind):
            raise ConfigError(f"{where} {f.name!r} must be {_type_name(kind)}, got {value!r}")
        fault = None if value is None else _range_fault(value, f.metadata)
        if fault:
            raise ConfigError(f"{where} {f.name!r} {fault}, got {value!r}")
    return config


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """An instance of dataclass ``cls`` from a mapping, with unknown fields and bad values named.

    ``cls`` checks its own fields (:func:`check_fields` in its ``__post_init__``).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of field names to values, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {where} field(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**data)  # a config checks its fields in __post_init__


def resolve_device(name: str):
    """``auto`` picks CUDA when available; asking for CUDA without it is a clear error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but torch sees no CUDA device; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
