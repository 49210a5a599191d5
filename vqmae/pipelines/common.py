"""What every stage entry point shares: config parsing, presets, --help, logging, clean errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from vqmae.config import ConfigError, config_help, parse_config
from vqmae.errors import UserError
from vqmae.runs import setup_logging

C = TypeVar("C")

log = logging.getLogger("vqmae")


def resolve_stage_config(config_cls: type[C], argv: list[str], base: dict[str, Any] | None = None,
                         presets: str | None = None,
                         base_from: Callable[[C], dict[str, Any]] | None = None) -> C:
    """The config of a stage: defaults < named preset (``vqmae/presets/<presets>.yaml``) <
    ``base`` < YAML files < overrides. ``base_from(first_pass_config)`` adds a layer that depends
    on settings (e.g. the architecture factory of the chosen preset and modality)."""
    cfg = parse_config(config_cls, argv, base=base, presets=presets)
    if base_from is None:
        return cfg
    return parse_config(config_cls, argv, base={**(base or {}), **base_from(cfg)}, presets=presets)


def print_help(prog: str, description: str, config_cls: type, presets: str | None = None) -> None:
    print(f"usage: vqmae {prog} [--config FILE.yaml] [key=value | --key value ...]\n")
    print(description.strip() + "\n")
    if presets:
        from vqmae.presets import PRESET_DIR, preset_names

        print(f"presets (preset=NAME, from {PRESET_DIR.name}/{presets}.yaml): "
              f"{', '.join(preset_names(presets))}\n")
    print("settings (key = default or REQUIRED [type; choices; range], description):")
    print(config_help(config_cls))


def stage_main(
    prog: str,
    description: str,
    config_cls: type[C],
    run_fn: Callable[[C], Any],
    argv: list[str] | None,
    base: dict[str, Any] | None = None,
    presets: str | None = None,
    base_from: Callable[[C], dict[str, Any]] | None = None,
    user_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Parse ``argv`` into ``config_cls`` (``--help`` lists every key) and call ``run_fn(cfg)``.

    Config errors, :class:`UserError` and ``user_errors`` exit with code 2 and a one-line message;
    a run stopped by a diverging loss (``NonFiniteLossError``) exits with 1 and its message.
    ``run_fn`` may return an int exit code.
    """
    from vqmae.runs import RunFolderError
    from vqmae.training import NonFiniteLossError

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print_help(prog, description, config_cls, presets)
        return 0
    setup_logging()
    try:
        cfg = resolve_stage_config(config_cls, argv, base, presets, base_from)
    except ConfigError as e:
        print(f"vqmae {prog}: config error: {e}", file=sys.stderr)
        return 2
    try:
        result = run_fn(cfg)
    except (UserError, ConfigError, FileNotFoundError, RunFolderError, *user_errors) as e:
        print(f"vqmae {prog}: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"vqmae {prog}: stopped: {e}", file=sys.stderr)
        return 1
    return int(result) if isinstance(result, int) else 0
