"""The shipped config templates (``boltzgen/templates/*.toml``): their names and texts."""

from __future__ import annotations

from importlib import resources

from ..errors import BoltzgenError

__all__ = ["template_names", "template_text"]


def template_names() -> list[str]:
    """Names of the shipped templates (file stems in ``boltzgen/templates``)."""
    folder = resources.files("boltzgen") / "templates"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def template_text(name: str) -> str:
    """The text of one template."""
    if name not in template_names():
        raise BoltzgenError(f"unknown template '{name}'; available: {', '.join(template_names())}")
    return (resources.files("boltzgen") / "templates" / f"{name}.toml").read_text()
