"""Run directories: a settings file that says what ran, written once and compared on resume.

Training runs (``config.toml``) and MD recordings (``settings.json``) claim their folder the same
way: the first run writes the settings atomically; a rerun with the same settings resumes; a
rerun with other settings is refused with the keys that differ, before anything is touched.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tomli_w

from ..errors import BoltzgenError
from .files import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["RunDir", "dump_toml"]

Settings = Mapping[str, Any]


def _flatten(settings: Settings, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        flat.update(_flatten(value, f"{name}.") if isinstance(value, Mapping) else {name: value})
    return flat


def _without_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value]
    return value


def dump_toml(settings: Settings) -> str:
    """``settings`` as TOML text, leaving out ``None`` values (TOML has no null)."""
    return tomli_w.dumps(_without_none(settings))


class RunDir:
    """A run folder identified by its settings file.

    Arguments:
        path: The folder (created by :meth:`claim`).
        settings_name: ``config.toml`` or ``settings.json`` (the suffix picks the format; TOML
            leaves out ``None`` values, which TOML cannot hold).
        canonical: Maps settings read back from the file to the form they are compared in
            (e.g. a config resolved again, so that keys added since it was written take their
            defaults); default: as read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        settings_name: str = "settings.json",
        canonical: Callable[[dict[str, Any]], Settings] | None = None,
    ) -> None:
        self.path = Path(path)
        self.settings_path = self.path / settings_name
        self._toml = self.settings_path.suffix == ".toml"
        self._canonical = canonical or (lambda settings: settings)

    def _dump(self, settings: Settings) -> str:
        if self._toml:
            return dump_toml(settings)
        return json.dumps(settings, indent=2, sort_keys=True) + "\n"

    def _parse(self, text: str) -> dict[str, Any]:
        try:
            return tomllib.loads(text) if self._toml else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
            raise BoltzgenError(
                f"{self.settings_path} is corrupted ({error}); move the folder away or use "
                "another output folder"
            ) from None

    def recorded(self) -> dict[str, Any] | None:
        """The settings in the folder as written (``None`` when it holds no run)."""
        if not self.settings_path.is_file():
            return None
        return self._parse(self.settings_path.read_text())

    def claim(self, settings: Settings) -> bool:
        """Write ``settings`` to a new folder, or check them against the folder's.

        Returns:
            ``True`` when the folder already held a run with these settings (resume).

        Raises:
            BoltzgenError: The folder holds a run with other settings (the message lists the
                keys that differ) or a corrupted settings file.
        """
        recorded = self.recorded()
        # Compare after a round trip through the file format, so that both sides read alike.
        wanted = _flatten(self._parse(self._dump(settings)))
        if recorded is None:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.settings_path, self._dump(settings))
            return False
        found = _flatten(self._parse(self._dump(self._canonical(recorded))))
        changed = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
        if changed:
            shown = ", ".join(changed[:8]) + (", ..." if len(changed) > 8 else "")
            raise BoltzgenError(
                f"{self.path} holds a run with different settings ({shown}): use another output "
                "folder, or the same settings to resume it"
            )
        return True
