"""Run directories: a settings file that says what ran, written once and compared on resume.

Training runs (``config.toml``) and MD recordings (``settings.json``) claim their folder the same
way: the first run writes the settings atomically; a rerun with the same settings resumes; a
rerun with other settings is refused with the keys that differ, before anything is touched.
While a process works in a run folder it holds the folder's lock (:meth:`RunDir.lock`, an
``flock`` on ``.lock`` that the kernel releases when the process ends, however it ends), so a
second process on the same folder is refused instead of interleaving its files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import tomli_w

from ..errors import BoltzgenError
from .files import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["RunDir", "dump_toml", "LOCK_FILE"]

#: The lock file of a run folder (kept after the run; the lock itself ends with the process).
LOCK_FILE = ".lock"

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
            self.create()
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

    def create(self) -> None:
        """Create the folder (and its parents), with a one-line error when that is impossible:
        a file in the way, no permission, a read-only or full file system."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise BoltzgenError(
                f"output folder {self.path} is a file (or a file is in its path): choose "
                "another output folder"
            ) from None
        except NotADirectoryError:
            raise BoltzgenError(
                f"output folder {self.path} is under a file, not a folder: choose another "
                "output folder"
            ) from None
        except OSError as error:
            raise BoltzgenError(
                f"cannot create output folder {self.path}: {error.strerror}; choose another "
                "output folder"
            ) from None

    def acquire_lock(self) -> IO[str]:
        """Take the folder's lock (creating the folder first) and return the open lock file;
        the lock lasts until that file is closed or the process ends.

        Raises:
            BoltzgenError: Another process holds it (the message gives its pid), or the folder
                cannot be created or written.
        """
        self.create()
        try:
            handle = open(self.path / LOCK_FILE, "a+")
        except OSError as error:
            raise BoltzgenError(
                f"cannot write into output folder {self.path}: {error.strerror}; choose another "
                "output folder"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise BoltzgenError(
                f"{self.path} is in use by another boltzgen process (pid {holder}): wait for it "
                "to finish, or use another output folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock for the block (:meth:`acquire_lock`)."""
        with self.acquire_lock():
            yield
