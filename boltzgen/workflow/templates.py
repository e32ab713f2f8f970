"""The shipped config templates (``boltzgen/templates/*.toml``): their names and texts."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

from ..errors import BoltzgenError
from .config import apply_overrides, dump_config, parse_config_text

__all__ = ["template_names", "template_text", "template_with"]


def template_names() -> list[str]:
    """Names of the shipped templates (file stems in ``boltzgen/templates``)."""
    folder = resources.files("boltzgen") / "templates"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def template_text(name: str) -> str:
    """The text of one template."""
    if name not in template_names():
        raise BoltzgenError(f"unknown template '{name}'; available: {', '.join(template_names())}")
    return (resources.files("boltzgen") / "templates" / f"{name}.toml").read_text()


def template_with(name: str, overrides: Sequence[str] = ()) -> str:
    """A template as TOML text with ``dotted.key=value`` overrides applied, as ``boltzgen train
    --set`` applies them (comments dropped).

    >>> "steps = 5" in template_with("toy-smoke", ["trainer.steps=5"])
    True
    """
    config = parse_config_text(template_text(name), f"template {name}")
    return dump_config(apply_overrides(config, overrides))
