"""Docstring text for ``--help``: reST markup removed, and key help built from the registry."""

from __future__ import annotations

import re

__all__ = ["plain_text", "key_help"]

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(text: str) -> str:
    """``text`` without reST roles and literals: ``:class:`~a.B``` -> ``B``, ````x```` -> ``x``.

    >>> plain_text("Stop (:class:`~boltzgen.trainers.NonFiniteTraining`) after ``n`` steps")
    'Stop (NonFiniteTraining) after n steps'
    """
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return _LITERAL.sub(r"\1", text)


def key_help(description: str | None, default: object, allowed: str | None) -> str:
    """Help of an option made from a config key: its description, default and allowed range."""
    parts = [plain_text(description).rstrip(".") if description else ""]
    parts.append(f"default {default}")
    if allowed:
        parts.append(allowed)
    head, *rest = [p for p in parts if p]
    return f"{head} ({'; '.join(rest)})" if rest else head
