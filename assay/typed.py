"""Build typed dataclasses from plain dicts (YAML), rejecting unknown keys and wrong types.

Every error names the dotted key path and the source (a file, or ``--param``), e.g.
``unknown key 'select.bugdet' in run.yaml (did you mean 'budget'?)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from assay.errors import ConfigError

T = TypeVar("T")


def _fail(path: str, source: str, msg: str) -> ConfigError:
    where = f" in {source}" if source else ""
    return ConfigError(f"{path or '<root>'}{where}: {msg}")


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def convert(tp: Any, value: Any, path: str, source: str) -> Any:
    """Check/convert ``value`` to type ``tp``; raise ConfigError naming ``path`` on mismatch."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(a, value, path, source)
            except ConfigError as e:
                errors.append(e)
        raise _fail(path, source, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise _fail(path, source, f"expected one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _fail(path, source, f"expected a list, got {value!r}")
        (item,) = get_args(tp)[:1] or (Any,)
        return [convert(item, v, f"{path}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _fail(path, source, f"expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {convert(kt, k, path, source): convert(vt, v, f"{path}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(typing.cast(type, tp), value, source=source, path=path)
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(path, source, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise _fail(path, source, f"expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(path, source, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(path, source, f"expected a string, got {value!r}")
        return value
    raise _fail(path, source, f"unsupported config type {tp!r}")


def from_dict(cls: type[T], data: Any, source: str = "", path: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``data``; unknown keys and missing required keys are errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(path, source, f"expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(typing.cast(Any, cls)) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            full = f"{path}.{key}" if path else str(key)
            where = f" in {source}" if source else ""
            raise ConfigError(f"unknown key {full!r}{where}{hint}; valid keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        full = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = convert(hints[name], data[name], full, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _fail(full, source, "required key is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as e:
            raise _fail(path, source, str(e)) from e
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass → plain dict (for writing the resolved config)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
