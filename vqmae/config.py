"""One config mechanism for every stage: dataclass defaults, YAML files, command-line overrides.

Rules (see docs/CONFIG.md):

* Each stage has a config dataclass (nested dataclasses allowed). Defaults live in the class.
* ``--config a.yaml [--config b.yaml]`` loads YAML files in order; later ones win.
* Overrides follow, in any of these forms: ``key=value``, ``--key value``, ``--key=value``.
  Nested fields are dotted (``optim.lr=1e-3``); ``-`` and ``_`` are interchangeable in keys.
  A bare ``--flag`` sets a boolean field to true; ``--no-flag`` sets it to false.
* Every value is checked against the field's type; unknown keys are rejected with the closest
  valid name suggested.
* Numeric settings declared with :func:`setting` are range-checked (``ge``/``gt``/``le``/``lt``);
  ``__post_init__`` checks of a config class surface as ConfigError too.
* A stage with named presets (``parse_config(..., presets="finetune")``) reads them from
  ``vqmae/presets/<stage>.yaml``; ``preset=NAME`` selects one, applied under files and overrides.
* ``--help`` texts (``config_help``) show each key's description (the ``help=`` of
  :func:`setting` or the attribute docstring below the field), default, type, choices and
  whether it is required.
* The resolved config is written into the run folder (``save_config``).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vqmae.config_types import (  # noqa: F401  (setting, _build, _check_range: public here)
    _META,
    ConfigError,
    _build,
    _check_range,
    _coerce,
    _field_types,
    _is_dataclass_type,
    _merge,
    _parse_scalar_string,
    _unknown_key,
    _unwrap_optional,
    config_to_dict,
    setting,
)

T = TypeVar("T")


def config_from_dict(cls: type[T], data: dict[str, Any] | None) -> T:
    """Build ``cls`` from a (nested) mapping; unknown keys and wrong types raise ConfigError."""
    return _build(cls, dict(data or {}))






def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a clear error names the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys")
    return data


def _set_dotted(cls: type, data: dict, dotted: str, raw: Any) -> None:
    """Place ``raw`` at ``dotted`` in ``data``, checking every key of the path against ``cls``."""
    parts = dotted.replace("-", "_").split(".")
    node, node_cls, prefix = data, cls, ""
    for i, part in enumerate(parts):
        types_ = _field_types(node_cls)
        if part not in types_:
            raise _unknown_key(node_cls, part, prefix)
        if i == len(parts) - 1:
            node[part] = raw
            return
        sub_tp, _ = _unwrap_optional(types_[part])
        if sub_tp is dict or typing.get_origin(sub_tp) is dict:
            # a free-form mapping: the rest of the dotted path is its (nested) keys
            current = node.setdefault(part, {})
            for sub in parts[i + 1:-1]:
                current = current.setdefault(sub, {})
            current[parts[-1]] = raw
            return
        if not _is_dataclass_type(sub_tp):
            raise ConfigError(f"'{prefix}{part}' is not a group of settings; cannot set '{dotted}'")
        current = node.get(part)
        if not isinstance(current, dict):
            current = {}
            node[part] = current
        node, node_cls, prefix = current, sub_tp, prefix + part + "."


def _field_type_at(cls: type, dotted: str) -> Any:
    node_cls = cls
    tp: Any = None
    for part in dotted.replace("-", "_").split("."):
        types_ = _field_types(node_cls)
        if part not in types_:
            return None
        tp = types_[part]
        inner, _ = _unwrap_optional(tp)
        node_cls = inner if _is_dataclass_type(inner) else object
    return _unwrap_optional(tp)[0] if tp is not None else None


def parse_overrides(cls: type, argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Split argv into (config files, nested override dict). Values stay strings/YAML scalars."""
    files: list[str] = []
    data: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c"):
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a file path")
            files.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
            i += 1
            continue
        if arg.startswith("--"):
            body = arg[2:]
            if "=" in body:
                key, value = body.split("=", 1)
                _set_dotted(cls, data, key, _parse_scalar_string(value))
                i += 1
                continue
            key = body
            tp = _field_type_at(cls, key)
            if tp is None and key.startswith("no-") and _field_type_at(cls, key[3:]) is bool:
                _set_dotted(cls, data, key[3:], False)
                i += 1
                continue
            if tp is bool and (i + 1 >= len(argv) or argv[i + 1].startswith("-") or "=" in argv[i + 1]
                               or argv[i + 1].lower() not in ("true", "false", "yes", "no", "1", "0", "on", "off")):
                _set_dotted(cls, data, key, True)
                i += 1
                continue
            if i + 1 >= len(argv):
                _set_dotted(cls, data, key, None)  # validates the key first
                raise ConfigError(f"--{key} needs a value")
            _set_dotted(cls, data, key, _parse_scalar_string(argv[i + 1]))
            i += 2
            continue
        if "=" in arg and not arg.startswith("-"):
            key, value = arg.split("=", 1)
            _set_dotted(cls, data, key, _parse_scalar_string(value))
            i += 1
            continue
        raise ConfigError(
            f"cannot read argument '{arg}': use key=value, --key value or --config file.yaml"
        )
    return files, data


def _default_of(cls: type, name: str) -> Any:
    return next((f.default for f in dataclasses.fields(cls) if f.name == name), None)


def _select_by(cls: type, values: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Resolve a preset's ``_by_<field>`` tables: ``_by_modality: {audio: {...}, visual: {...}}``
    adds the values under the setting's current value (``data`` or the class default)."""
    out = {k: v for k, v in values.items() if not str(k).startswith("_by_")}
    for key, table in values.items():
        if str(key).startswith("_by_"):
            field_name = str(key)[4:]
            choice = data.get(field_name, _default_of(cls, field_name))
            out = _merge(out, (table or {}).get(choice, {}))
    return out


def parse_config(cls: type[T], argv: list[str] | None = None, base: dict[str, Any] | None = None,
                 presets: str | None = None) -> T:
    """Resolve a config: defaults < preset < ``base`` < YAML files (in order) < overrides.

    With ``presets="<stage>"`` the config's ``preset`` field (set anywhere in that chain, or its
    default) names a preset of ``vqmae/presets/<stage>.yaml`` whose values are applied first;
    a preset's ``_by_<field>`` table adds the values for that field's value (e.g. per modality).
    """
    files, overrides = parse_overrides(cls, list(argv or []))
    data: dict[str, Any] = dict(base or {})
    for f in files:
        data = _merge(data, load_yaml(f))
    data = _merge(data, overrides)
    if presets is not None:
        from vqmae.presets import preset_values

        name = data.get("preset", _default_of(cls, "preset"))
        if isinstance(name, str) and name:
            data = _merge(_select_by(cls, preset_values(presets, name), data), data)
    try:
        return config_from_dict(cls, data)
    except ConfigError as e:
        where = f" (from {', '.join(files)})" if files else ""
        raise ConfigError(f"{e}{where}") from None


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically)."""
    from vqmae.io import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def replace(cfg: T, **changes: Any) -> T:
    """``dataclasses.replace`` with type checking of the new values."""
    types_ = _field_types(type(cfg))
    checked = {}
    for k, v in changes.items():
        if k not in types_:
            raise _unknown_key(type(cfg), k, "")
        checked[k] = _coerce(v, types_[k], k)
    return dataclasses.replace(cfg, **checked)


# --help texts live in vqmae.config_help (re-exported here).
from vqmae.config_help import config_help, field_description  # noqa: E402, F401
