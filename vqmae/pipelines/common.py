"""What every stage entry point shares: config parsing, --help, logging, clean errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from vqmae.config import ConfigError, config_help, parse_config
from vqmae.runs import setup_logging

C = TypeVar("C")

log = logging.getLogger("vqmae")


class UserError(Exception):
    """An error caused by the user's input (bad file, wrong folder): printed without a traceback."""


def stage_main(
    prog: str,
    description: str,
    config_cls: type[C],
    run_fn: Callable[[C], Any],
    argv: list[str] | None,
    base: dict[str, Any] | None = None,
    presets: str | None = None,
) -> int:
    """Parse ``argv`` into ``config_cls`` (``--help`` lists every key) and call ``run_fn(cfg)``.

    ``presets="<stage>"``: the config's ``preset`` names one of ``vqmae/presets/<stage>.yaml``.
    Config errors and :class:`UserError` exit with code 2 and a one-line message.
    ``run_fn`` may return an int exit code.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: vqmae {prog} [--config FILE.yaml] [key=value | --key value ...]\n")
        print(description.strip() + "\n")
        print("settings (key = default [type]):")
        print(config_help(config_cls))
        return 0
    setup_logging()
    try:
        cfg = parse_config(config_cls, argv, base=base, presets=presets)
    except ConfigError as e:
        print(f"vqmae {prog}: config error: {e}", file=sys.stderr)
        return 2
    try:
        result = run_fn(cfg)
    except (UserError, ConfigError, FileNotFoundError) as e:
        print(f"vqmae {prog}: error: {e}", file=sys.stderr)
        return 2
    return int(result) if isinstance(result, int) else 0
