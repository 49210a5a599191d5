"""Config fields and building: ``setting`` (description + range), checking a value against a
field's annotation and converting it where unambiguous (YAML scalars, command-line strings), and
building a (nested) config dataclass from a mapping, with errors that name the key."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml


class ConfigError(ValueError):
    """A config file or override that does not fit the config dataclass."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) != len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return typing.Union[tuple(args)], optional  # noqa: UP007
    return tp, False


def _parse_scalar_string(text: str) -> Any:
    """A command-line value as YAML would read it (``1e-3`` -> float, ``null`` -> None)."""
    if text.strip() == "":
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # YAML 1.1 reads 1e-3 as a string; accept it as a float.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where unambiguous."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional or tp is Any:
            return None
        raise ConfigError(f"{key}: null is not allowed (expected {_type_name(tp)})")
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str) and value not in choices:
            for c in choices:  # allow numeric literals given as strings
                if str(c) == value:
                    return c
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} does not match {_type_name(tp)}")
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, prefix=key + ".")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = _parse_scalar_string(value) if value.startswith("[") else value.split(",")
        if not isinstance(value, (list, tuple)):
            value = [value]
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if tp is Path:
        return Path(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: cannot check value {value!r} against {_type_name(tp)}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


T = TypeVar("T")


_META = "vqmae"


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
            help: str | None = None, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field with a description and a range check, e.g.
    ``epochs: int = setting(10, ge=1, help="passes over the training data")``.

    The range is checked whenever the value comes from a file, an override or ``replace``
    (``None`` is always allowed for optional fields); a violation is a ConfigError naming the key.
    """
    meta = {_META: {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt}}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _check_range(f: dataclasses.Field, value: Any, key: str) -> None:
    meta = f.metadata.get(_META)
    if not meta or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value!r}")
    bounds = [("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b),
              ("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b)]
    for name, sign, ok in bounds:
        bound = meta.get(name)
        if bound is not None and not ok(value, bound):
            raise ConfigError(f"{key}: must be {sign} {bound:g}, got {value!r}")


def _unknown_key(cls: type, name: str, prefix: str) -> ConfigError:
    valid = list(_field_types(cls))
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key '{prefix}{name}' for {cls.__name__}{hint}")


def _default_dict(f: dataclasses.Field) -> dict[str, Any]:
    """The default of a nested-dataclass field as a dict (``{}`` for other fields), so that
    ``train.epochs=3`` on a field whose default differs from its class's keeps the rest of it."""
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = f.default_factory()  # type: ignore[misc]
    else:
        default = f.default
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return config_to_dict(default)
    return {}


def _build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    types_ = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for raw_name, value in data.items():
        name = str(raw_name).replace("-", "_")
        if name not in types_:
            raise _unknown_key(cls, name, prefix)
        if isinstance(value, dict):  # nested settings keep the field's other defaults
            value = _merge(_default_dict(fields[name]), value)
        kwargs[name] = _coerce(value, types_[name], prefix + name)
        _check_range(fields[name], kwargs[name], prefix + name)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without default
        missing = [n for n, f in fields.items() if f.init and n not in kwargs
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            keys = ", ".join(prefix + n for n in missing)
            raise ConfigError(f"missing required setting(s): {keys}") from None
        raise ConfigError(f"{cls.__name__}: {e}") from e
    except ValueError as e:  # a check in __post_init__
        if isinstance(e, ConfigError):
            raise
        head = str(e).split(":", 1)[0]
        if head.split(".")[0] in fields:  # "name: why" -> the full dotted key
            raise ConfigError(f"{prefix}{e}") from None
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {e}") from None


# ------------------------------------------------------------------------------ public API


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-safe dict of a config dataclass (tuples become lists, Paths strings)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        k = str(k).replace("-", "_")
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
