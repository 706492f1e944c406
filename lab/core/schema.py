"""Building the typed config from params.yaml's raw mapping: each value checked against its
annotation, each mistake named by its exact key (lab.core.config holds the types themselves)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from lab.core.errors import ConfigError


def build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, naming the exact key on any mistake."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'params'}: expected a mapping, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where or 'params'}: unknown key(s) {unknown}; known: {sorted(known)}")
    missing = [name for name in known if name not in raw]
    if missing:
        raise ConfigError(f"{where or 'params'}: missing key(s) {missing} (every param is set in params.yaml)")
    values = {}
    for name in known:
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        values[name] = build(hint, raw[name], key) if dataclasses.is_dataclass(hint) else coerce(raw[name], hint, key)
    return cls(**values)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check a value against its annotation; YAML 1.1 reads 2e-4 as a string, so floats are parsed."""
    args = get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        rest = tuple(a for a in args if a is not type(None))
        hint = rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007 (a runtime union of the rest)
        args = get_args(hint)
    if value is None:
        raise ConfigError(f"{key}: must not be null")
    if dataclasses.is_dataclass(hint):  # a list of mappings (data.mix.extra_sources)
        return build(hint, value, key)
    if get_origin(hint) is dict:
        if not isinstance(value, dict) or not all(isinstance(name, str) for name in value):
            raise ConfigError(f"{key}: expected a mapping of names to values, got {value!r}")
        return {name: coerce(item, get_args(hint)[1], f"{key}.{name}") for name, item in value.items()}
    words = [a for a in args if get_origin(a) is Literal]
    if words and int in args:  # a count or a word (train.processes: 2 or auto)
        if isinstance(value, str):
            if value not in get_args(words[0]):
                raise ConfigError(f"{key}: {value!r} is not allowed; allowed: a whole number or "
                                  f"{'|'.join(get_args(words[0]))}")
            return value
        return coerce(value, int, key)
    if set(args) == {int, float}:
        # int | float keeps what was written: 3 (a count) stays an int, 0.5 or 1.0 (a share) a float.
        return coerce(value, int if isinstance(value, int) else float, key)
    if get_origin(hint) is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {'|'.join(get_args(hint))}")
        return value
    if get_origin(hint) is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [coerce(item, get_args(hint)[0], f"{key}[{i}]") for i, item in enumerate(value)]
    name = getattr(hint, "__name__", str(hint))
    if isinstance(value, bool) and hint is not bool:
        raise ConfigError(f"{key}: expected {name}, got {value!r}")
    try:
        if hint is int:
            if isinstance(value, str) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {name}, got {value!r}") from None
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise ConfigError(f"{key}: expected {name}, got {value!r}")


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it, nested mappings merged key by key."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
