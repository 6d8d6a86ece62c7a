"""Typed configuration: dataclasses loaded from YAML with strict validation.

Every configuration in fedrs (a run, a backbone pretraining recipe, a study) is a dataclass.
``load_config(cls, path)`` reads YAML into it and fails on an unknown key or a value of the wrong
type, naming the key and the file, so a typo in a papermill batch never silently falls back to a
default. Nested dataclasses, ``Optional``, ``list``/``tuple``/``dict`` and ``Literal`` are
supported. Numbers must be finite (``.inf`` and ``.nan`` are refused, naming the key), and a float
field also accepts a number that YAML read as a string (PyYAML reads ``1e-3`` so). ``to_dict``
turns a config back into plain data (for ``params.yaml`` in run folders).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from fedrs.errors import FedrsError

T = TypeVar("T")


class ConfigError(FedrsError, ValueError):
    """A configuration file or mapping does not match its dataclass."""


class NonFiniteNumberError(ConfigError):
    """A configuration number is infinite or NaN (``.inf``, ``.nan`` in YAML)."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _finite(number: float, where: str, value: Any) -> float:
    if not math.isfinite(number):
        raise NonFiniteNumberError(f"{where}: must be a finite number, got {value!r} "
                                   f"(infinity and NaN are not allowed: give a number such as 1e-3)")
    return number


def _check_finite(value: Any, where: str) -> Any:
    """``value`` (untyped data) unchanged, or a ConfigError naming the first non-finite float."""
    if isinstance(value, float):
        _finite(value, where, value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}[{i}]")
    return value


def _to_float(value: Any, where: str) -> float:
    """A finite float from a YAML number or a number written as a string.

    PyYAML (YAML 1.1) reads ``1e-3`` (no dot in the mantissa) as the *string* "1e-3", so a
    float field accepts a string that Python reads as a number.
    """
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    else:
        try:
            number = float(value)
        except OverflowError:
            raise ConfigError(f"{where}: {value!r} is too large for a number") from None
    return _finite(number, where, value)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return _check_finite(value, where)
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors: list[ConfigError] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(exc)
        for exc in errors:  # a number of the right type but infinite or NaN: say so, not "wrong type"
            if isinstance(exc, NonFiniteNumberError):
                raise exc
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: must be one of {list(allowed)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(k, kt, f"{where}.<key>"): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        return _to_float(value, where)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; "
            f"valid keys are {sorted(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}" if where else name)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where or cls.__name__}: missing required key(s) {missing}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # __post_init__ validation
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def from_dict(cls: type[T], data: Mapping[str, Any] | None, source: str = "") -> T:
    """Build ``cls`` from plain data; ``source`` (a file name) prefixes every error."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source or cls.__name__}: expected a mapping at top level, got {type(data).__name__}")
    return _build(cls, data, source)


def load_config(cls: type[T], path: str | Path, overrides: Mapping[str, Any] | None = None) -> T:
    """Load a YAML file into ``cls``; ``overrides`` are dotted keys (``"train.lr": 0.01``)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a configuration file: pass a YAML file inside it")
    if not path.is_file():
        raise ConfigError(f"{path}: no such configuration file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if overrides:
        data = apply_overrides(data, overrides)
    return from_dict(cls, data, str(path))


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict:
    """Return a copy of ``data`` with dotted-key overrides applied (``{"train.lr": 0.1}``)."""
    out = _deepcopy(data)
    for dotted, value in overrides.items():
        node = out
        keys = dotted.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node[keys[-1]] = value
    return out


def parse_overrides(pairs) -> dict:
    """``["train.lr=0.01", "method.n_ctx=8"]`` (command-line ``--set``) -> ``{"train.lr": 0.01, ...}``;
    values are parsed as YAML."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set train.rounds=2")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _deepcopy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def to_dict(cfg: Any) -> Any:
    """Plain-data view of a config (dataclasses -> dicts, tuples -> lists, Paths -> str)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


__all__ = [
    "ConfigError", "NonFiniteNumberError", "from_dict", "load_config", "apply_overrides",
    "parse_overrides", "to_dict", "dump_yaml",
]

# Keep typing imported for users who build configs with typing-only aliases.
_ = typing
