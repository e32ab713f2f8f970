"""``boltzgen init``: write a commented example config from a template."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from ..errors import BoltzgenError
from ..io import atomic_write_text

__all__ = ["add_parser", "template_names", "template_text"]


def template_names() -> list[str]:
    """Names of the shipped templates (file stems in ``boltzgen/templates``)."""
    folder = resources.files("boltzgen") / "templates"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def template_text(name: str) -> str:
    """The text of one template."""
    if name not in template_names():
        raise BoltzgenError(f"unknown template '{name}'; available: {', '.join(template_names())}")
    return (resources.files("boltzgen") / "templates" / f"{name}.toml").read_text()


def _first_comment(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return line.lstrip("# ").removeprefix("boltzgen config: ")


def run(args: argparse.Namespace) -> int:
    if args.list or args.template is None:
        for name in template_names():
            print(f"{name:28s} {_first_comment(template_text(name))}")
        return 0
    text = template_text(args.template)
    out = Path(args.output or f"{args.template}.toml")
    if out.exists() and not args.force:
        raise BoltzgenError(f"{out} exists; pass --force to overwrite it or -o another file")
    atomic_write_text(out, text)
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
