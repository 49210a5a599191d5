"""Named presets for every stage, one YAML file per stage (``<stage>.yaml`` beside this file).

Each file maps a preset name to config values of that stage (nested as in the stage's config
dataclass). ``vqmae.config.parse_config(cls, argv, presets="<stage>")`` applies the preset that
the config's ``preset`` key names, under YAML files and command-line overrides, so a user can
start from a preset and change any value of it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent


@functools.cache
def _table(stage: str) -> dict[str, dict[str, Any]]:
    path = PRESET_DIR / f"{stage}.yaml"
    if not path.is_file():
        raise KeyError(f"no presets for stage '{stage}' ({path} missing)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected a mapping of preset name -> settings")
    return data


def preset_names(stage: str) -> list[str]:
    """The presets a stage knows, in file order."""
    return list(_table(stage))


def preset_values(stage: str, name: str) -> dict[str, Any]:
    """A deep copy of one preset's settings; ConfigError naming the choices if unknown."""
    import copy

    from vqmae.config_types import ConfigError

    table = _table(stage)
    if name not in table:
        raise ConfigError(f"preset: unknown {stage} preset '{name}' (known: {', '.join(table)})")
    return copy.deepcopy(table[name])
