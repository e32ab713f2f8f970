"""Run configurations: TOML files with ``[target]``, ``[model]``, ``[trainer]`` and ``[sample]``
tables.

A config is read with :mod:`tomllib` (``tomli`` on Python 3.10), overridden by ``--set
key=value`` pairs (dotted keys, TOML values), checked against the known keys and types, and
written back resolved (every default filled in) to the run directory. Each table's ``name``
selects a factory in :mod:`boltzgen.recipes`; the factory's keyword arguments are that table's
allowed keys, so unknown keys and bad values fail with one line before anything runs.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import BoltzgenError
from ..io.rundir import dump_toml
from ..ranges import MAX_SEED

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "load_config",
    "apply_overrides",
    "dump_config",
    "parse_config_text",
    "TOP_LEVEL_DEFAULTS",
]

#: Keys allowed at the top level of a config, with their defaults.
TOP_LEVEL_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "auto",
    "dtype": "float32",
    "init_from": "",  # a run directory whose trained model starts this run's (a warm start)
}
SECTIONS = ("target", "model", "trainer", "sample")


def parse_config_text(text: str, source: str = "<config>") -> dict[str, Any]:
    """Parse TOML text into a dict, with a one-line error naming the line on bad syntax."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise BoltzgenError(f"{source} is not valid TOML: {error}") from None
    except RecursionError:
        raise BoltzgenError(
            f"{source} is not a usable config: its tables or arrays are nested too deeply"
        ) from None


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a config file and apply ``key=value`` overrides; structure checked, not yet
    resolved."""
    path = Path(path)
    if path.is_dir():
        raise BoltzgenError(f"{path} is a folder, not a config file: give a TOML file")
    if not path.is_file():
        raise BoltzgenError(
            f"config file {path} does not exist (write one with 'boltzgen init TEMPLATE -o "
            f"{path}')"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise BoltzgenError(
            f"{path} is not a text config (not UTF-8 at byte {error.start}): give a TOML file"
        ) from None
    except OSError as error:
        raise BoltzgenError(f"cannot read config file {path}: {error.strerror}") from None
    config = parse_config_text(text, str(path))
    config = apply_overrides(config, overrides)
    check_structure(config, str(path))
    return config


def apply_overrides(config: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``config`` with each ``dotted.key=value`` set (value parsed as TOML, else a
    string)."""
    result = copy.deepcopy(dict(config))
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BoltzgenError(f"--set expects key=value (e.g. trainer.steps=500), got '{item}'")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        table = result
        parts = key.split(".")
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise BoltzgenError(f"--set {key}: '{part}' is not a table")
        table[parts[-1]] = value
    return result


def check_structure(config: Mapping[str, Any], source: str = "config") -> None:
    """Top-level keys and section types; the sections' own keys are checked by their factories."""
    allowed = set(TOP_LEVEL_DEFAULTS) | set(SECTIONS)
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise BoltzgenError(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed at the top level: "
            f"{', '.join(sorted(allowed))}"
        )
    for section in SECTIONS:
        if section in config and not isinstance(config[section], dict):
            raise BoltzgenError(f"{source}: '{section}' must be a table ([{section}])")
    for section in ("target", "model", "trainer"):
        if "name" not in config.get(section, {}):
            raise BoltzgenError(
                f"{source}: [{section}] needs a 'name' (see 'boltzgen init --list' for examples)"
            )
    if config.get("dtype", "float32") not in ("float32", "float64"):
        raise BoltzgenError(
            f"{source}: dtype must be 'float32' or 'float64', got {config['dtype']!r}"
        )
    if config.get("device", "auto") not in ("auto", "cpu", "cuda") and not str(
        config["device"]
    ).startswith("cuda:"):
        raise BoltzgenError(
            f"{source}: device must be 'auto', 'cpu' or 'cuda[:N]', got {config['device']!r}"
        )
    if not isinstance(config.get("init_from", ""), str):
        raise BoltzgenError(
            f"{source}: init_from = {config['init_from']!r} must be a run directory (a string)"
        )
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise BoltzgenError(
            f"{source}: seed = {seed!r} is out of range: allowed an integer >= 0 and <= {MAX_SEED}"
        )


def dump_config(config: Mapping[str, Any]) -> str:
    """The resolved config as TOML text (round-trips through :func:`parse_config_text`)."""
    return dump_toml(config)
