"""``boltzgen init``: write a commented example config from a template."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BoltzgenError
from ..io import atomic_write_text
from ..workflow.templates import template_names, template_text

__all__ = ["add_parser"]


def _first_comment(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return line.lstrip("# ").removeprefix("boltzgen config: ")


def _for_file(text: str, template: str, out: Path) -> str:
    """The template text with its header's ``boltzgen train TEMPLATE.toml`` naming ``out``."""
    lines = text.splitlines(keepends=True)
    return "".join(
        line.replace(f"train {template}.toml", f"train {out}") if line.startswith("#") else line
        for line in lines
    )


def run(args: argparse.Namespace) -> int:
    if args.list or args.template is None:
        for name in template_names():
            print(f"{name:28s} {_first_comment(template_text(name))}")
        return 0
    text = template_text(args.template)
    out = Path(args.output or f"{args.template}.toml")
    if out.exists() and not args.force:
        raise BoltzgenError(f"{out} exists; pass --force to overwrite it or -o another file")
    atomic_write_text(out, _for_file(text, args.template, out))
    print(f"wrote {out}; train with: boltzgen train {out}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "init",
        help="write an example config from a template",
        description="Write a commented example config.",
    )
    p.add_argument("template", nargs="?", help="template name (see --list)")
    p.add_argument("--list", action="store_true", help="list the templates")
    p.add_argument("-o", "--output", help="file to write (default: TEMPLATE.toml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(run=run)
