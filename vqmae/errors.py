"""Errors that the command line turns into a one-line message and exit code 2 (never a traceback)."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input (bad file, wrong folder): printed without a traceback."""
