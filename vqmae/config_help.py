"""``--help`` texts of config dataclasses: each key's description (``setting(help=...)`` or the
attribute docstring under the field), default or REQUIRED, type, choices and range."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import typing
from typing import Any

from vqmae.config_types import _META, _field_types, _is_dataclass_type, _type_name, _unwrap_optional


@functools.cache
def _attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings written under fields (``x: int = 1`` then ``\"\"\"text\"\"\"``)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def field_description(cls: type, name: str) -> str:
    """The description of a config field: ``setting(help=...)`` or its attribute docstring."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            meta = f.metadata.get(_META) or {}
            if meta.get("help"):
                return str(meta["help"])
    return _attribute_docs(cls).get(name, "")


# ----------------------------------------------------------------------------------- types


def _choices(tp: Any) -> list[Any]:
    inner, _ = _unwrap_optional(tp)
    if typing.get_origin(inner) is typing.Literal:
        return list(typing.get_args(inner))
    if typing.get_origin(inner) in (list, tuple):
        args = [a for a in typing.get_args(inner) if a is not Ellipsis]
        if len(args) == 1 and typing.get_origin(args[0]) is typing.Literal:
            return list(typing.get_args(args[0]))
    return []


def config_help(cls: type, prefix: str = "") -> str:
    """Per settable key: name, default (or ``REQUIRED``), type, choices, range, description."""
    lines = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = _field_types(cls)[f.name]
        inner, _ = _unwrap_optional(tp)
        if _is_dataclass_type(inner):
            lines.append(config_help(inner, prefix + f.name + "."))
            continue
        if f.default is not dataclasses.MISSING:
            default = f"= {f.default!r}"
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f"= {f.default_factory()!r}"  # type: ignore[misc]
        else:
            default = "REQUIRED"
        choices = _choices(tp)
        kind = "one of " + ", ".join(map(str, choices)) if choices else _type_name(tp)
        meta = f.metadata.get(_META) or {}
        limits = [f"{s} {meta[k]:g}" for k, s in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                  if meta.get(k) is not None]
        extra = f"; {', '.join(limits)}" if limits else ""
        lines.append(f"  {prefix}{f.name} {default}  [{kind}{extra}]")
        desc = field_description(cls, f.name)
        if desc:
            lines.append(textwrap.fill(desc, width=96, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join(lines)
