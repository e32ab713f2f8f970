"""From a resolved config to objects: the one registry of targets, models and objectives.

Each table of a config (``[target]``, ``[model]``, ``[trainer]``) names a factory registered with
:func:`register`. The table's schema is read from signatures, never restated: the factory's own
keyword arguments, plus the constructor arguments of the classes it names in ``keys_from``
(e.g. :class:`~boltzgen.flows.CouplingFlow`, so that config and library defaults cannot
disagree) and the fields of the dataclasses it composes (e.g. the training-data keys). Unknown
keys and values of the wrong type are refused with one line, and :func:`resolve_config` fills in
every default so that the run directory records exactly what ran.

The registrations live in :mod:`~boltzgen.workflow.targets`, :mod:`~boltzgen.workflow.models`,
:mod:`~boltzgen.workflow.objectives` and :mod:`~boltzgen.workflow.discrete`, which
:mod:`boltzgen.workflow` imports; this module imports none of them (no import loop). A factory
may take further context arguments after ``target`` (a teacher model, a second network) by
registering them in ``context``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..energy.base import Energy
from ..errors import BoltzgenError
from ..federated.rounds import Federation, FederationSettings
from ..tensors import select_device
from ..trainers.annealing import AnnealingSettings, TemperatureAnnealing
from ..trainers.loop import Trainer, TrainSettings
from .config import TOP_LEVEL_DEFAULTS
from .ranges import SAMPLE_COUNT, key_range

__all__ = [
    "TARGETS",
    "MODELS",
    "OBJECTIVES",
    "register",
    "resolve_config",
    "build_target",
    "build_model",
    "build_objective",
    "train_settings",
    "build_training",
    "domain_targets",
    "keys_of",
    "schema",
    "describe",
    "docstring_arguments",
    "PROTOCOLS",
    "training_temperature",
]

#: name -> factory(**params) -> Energy
TARGETS: dict[str, Callable[..., Energy]] = {}
#: name -> factory(target, **params) -> model
MODELS: dict[str, Callable[..., torch.nn.Module]] = {}
#: name -> factory(target, **params) -> Objective
OBJECTIVES: dict[str, Callable[..., Any]] = {}
#: Multi-stage training protocols: ``[trainer] name`` -> settings dataclass (whose fields are the
#: table's keys); they run their own stages instead of one :class:`Trainer`.
PROTOCOLS: dict[str, type] = {"tabg": AnnealingSettings, "federated": FederationSettings}
_REGISTRIES = {"target": TARGETS, "model": MODELS, "trainer": OBJECTIVES}
#: Positional context arguments of model/objective factories (not config keys).
_CONTEXT = {"target"}


#: (section, name) -> (the factory's keys sources, excluded names); read on first use.
_SOURCES: dict[tuple[str, str], tuple[list[Callable | type | str], list[str]]] = {}


def keys_of(
    source: Callable | type | str, exclude: Sequence[str] = ()
) -> dict[str, tuple[Any, str]]:
    """Config keys read from a signature: name -> (default or ``inspect.Parameter.empty``,
    annotation text).

    ``source`` is a function, a class (its ``__init__``), a dataclass (its fields), or
    ``"module:Class"`` (imported now: for classes whose modules import OpenMM). ``self``,
    ``*args``/``**kwargs`` and the names in ``exclude`` are left out.
    """
    if isinstance(source, str):
        module, _, attribute = source.partition(":")
        source = getattr(importlib.import_module(module), attribute)
    if dataclasses.is_dataclass(source):
        return {
            f.name: (
                f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty,
                str(f.type),
            )
            for f in dataclasses.fields(source)
            if f.name not in exclude
        }
    function = source.__init__ if isinstance(source, type) else source
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return {
        n: (p.default, str(p.annotation))
        for n, p in inspect.signature(function).parameters.items()
        if n != "self" and n not in exclude and p.kind not in variadic
    }


def register(
    section: str,
    name: str,
    keys_from: Sequence[Callable | type | str] = (),
    exclude: Sequence[str] = (),
) -> Callable[[Callable], Callable]:
    """Decorator registering a factory for ``[section] name = ...``.

    Arguments:
        section: ``"target"``, ``"model"`` or ``"trainer"``.
        name: The ``name`` of the table.
        keys_from: Classes or dataclasses (or ``"module:Class"`` names, read on first use)
            whose constructor arguments the factory accepts as ``**options`` and forwards;
            their keys join the factory's own (which win).
        exclude: Constructor arguments of ``keys_from`` that the factory supplies itself.

    A model or objective factory receives the target as its first argument; everything else
    it takes is a config key.
    """
    registry = _REGISTRIES[section]

    def decorate(factory: Callable) -> Callable:
        if name in registry:
            raise ValueError(f"[{section}] {name!r} is registered twice")
        registry[name] = factory
        _SOURCES[section, name] = ([*keys_from, factory], [*exclude, *_CONTEXT])
        return factory

    return decorate


_SECTION_HEADS = ("Arguments:", "Args:", "Attributes:", "Parameters:")


def docstring_arguments(source: Callable | type | str) -> dict[str, str]:
    """Argument descriptions from the Google-style ``Arguments:`` / ``Attributes:`` section of
    ``source``'s docstring: name -> one line (``"a, b: text"`` describes both)."""
    if isinstance(source, str):
        module, _, attribute = source.partition(":")
        source = getattr(importlib.import_module(module), attribute)
    lines = inspect.cleandoc(source.__doc__ or "").splitlines()
    found: dict[str, str] = {}
    inside, indent, current = False, 0, []
    for line in lines:
        stripped = line.strip()
        if stripped in _SECTION_HEADS:
            inside, indent, current = True, len(line) - len(line.lstrip()), []
            continue
        if not inside:
            continue
        depth = len(line) - len(line.lstrip())
        if not stripped:
            continue
        if depth <= indent:  # the next section, or text after the arguments
            inside, current = False, []
            continue
        head, sep, text = stripped.partition(": ")
        if sep and depth == indent + 4 and all(n.strip().isidentifier() for n in head.split(",")):
            current = [n.strip() for n in head.split(",")]
            for name in current:
                found[name] = text
        elif current:
            for name in current:
                found[name] = f"{found[name]} {stripped}"
    return found


def describe(section: str, name: str) -> dict[str, str]:
    """One-line descriptions of the config keys of a registered factory (where its sources'
    docstrings give one)."""
    sources, _ = _SOURCES[section, name]
    found: dict[str, str] = {}
    for source in sources:
        found.update(docstring_arguments(source))
    return {key: text for key, text in found.items() if key in schema(section, name)}


def schema(section: str, name: str) -> dict[str, tuple[Any, str]]:
    """The config keys of a registered factory (:func:`keys_of`'s format)."""
    sources, exclude = _SOURCES[section, name]
    keys: dict[str, tuple[Any, str]] = {}
    for source in sources:
        keys.update(keys_of(source, exclude))
    return keys


_SETTINGS_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainSettings)}
_SETTINGS_SCHEMA = keys_of(TrainSettings)


def _check_value(section: str, key: str, value: Any, annotation: str) -> Any:
    """Check ``value`` against the factory's annotation (``int``, ``float``, ``str``, ``bool``,
    ``list``)."""
    kind = annotation.split("|")[0].strip().split("[")[0]
    if value is None and "None" in annotation:
        return value
    checks = {
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "list": lambda v: isinstance(v, list),
        "dict": lambda v: isinstance(v, dict),
    }
    if kind in checks and not checks[kind](value):
        article = "an" if kind == "int" else "a"
        raise BoltzgenError(f"[{section}] {key} = {value!r}: expected {article} {kind}")
    return float(value) if kind == "float" else value


def _resolve_section(section: str, table: Mapping[str, Any]) -> dict[str, Any]:
    registry = {**OBJECTIVES, **PROTOCOLS} if section == "trainer" else _REGISTRIES[section]
    name = table["name"]
    if not isinstance(name, str):
        raise BoltzgenError(
            f"[{section}] name = {name!r}: expected a string, one of: "
            f"{', '.join(sorted(registry))}"
        )
    if name not in registry:
        raise BoltzgenError(
            f"[{section}] name = {name!r} is unknown; choose one of: {', '.join(sorted(registry))}"
        )
    if section == "trainer" and name in PROTOCOLS:
        keys = PROTOCOLS[name].config_keys()
    else:
        keys = schema(section, name)
    if section == "trainer" and name not in PROTOCOLS:
        keys = {**_SETTINGS_SCHEMA, **keys}
    unknown = sorted(set(table) - set(keys) - {"name"})
    if unknown:
        raise BoltzgenError(
            f"[{section}] unknown key(s) for '{name}': {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(keys))}"
        )
    resolved: dict[str, Any] = {"name": name}
    protocol = PROTOCOLS.get(name) if section == "trainer" else None
    for key, (default, annotation) in keys.items():
        if key in table:
            resolved[key] = _check_value(section, key, table[key], annotation)
            range_ = key_range(section, name, key)
            if range_ is not None and resolved[key] is not None:
                range_.check(f"[{section}] {key}", resolved[key])
        elif protocol is not None:
            continue  # the protocol's settings fill in its defaults (shared keys need that)
        elif default is not inspect.Parameter.empty:
            resolved[key] = default
        else:
            raise BoltzgenError(f"[{section}] '{name}' needs the key '{key}'")
    if protocol is not None:
        return {"name": name, **protocol.from_params(resolved).to_params()}
    return resolved


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Fill in every default and check every key and type; returns a new dict."""
    resolved: dict[str, Any] = {
        key: config.get(key, default) for key, default in TOP_LEVEL_DEFAULTS.items()
    }
    for section in ("target", "model", "trainer"):
        resolved[section] = _resolve_section(section, config[section])
    sample = dict(config.get("sample", {}))
    unknown = sorted(set(sample) - {"n"})
    if unknown:
        raise BoltzgenError(f"[sample] unknown key(s): {', '.join(unknown)}; allowed: n")
    resolved["sample"] = {"n": _check_value("sample", "n", sample.get("n", 10000), "int")}
    SAMPLE_COUNT.check("[sample] n", resolved["sample"]["n"])
    if resolved["trainer"]["name"] in PROTOCOLS:
        PROTOCOLS[resolved["trainer"]["name"]].from_params(resolved["trainer"])  # range checks
    else:
        TrainSettings(**{k: resolved["trainer"][k] for k in _SETTINGS_DEFAULTS})  # range checks
    return resolved


def training_temperature(resolved: Mapping[str, Any]) -> float | None:
    """The temperature the trained model targets (``None``: the target's own)."""
    trainer = resolved["trainer"]
    return trainer.get("t_low") if trainer["name"] in PROTOCOLS else trainer.get("temperature")


def _call(factory: Callable, params: Mapping[str, Any], *context: Any) -> Any:
    return factory(
        *context,
        **{k: v for k, v in params.items() if k != "name" and k not in _SETTINGS_DEFAULTS},
    )


def build_target(resolved: Mapping[str, Any]) -> Energy:
    """The target energy of a resolved config (on the config's device and dtype)."""
    target = _call(TARGETS[resolved["target"]["name"]], resolved["target"])
    return target.to(select_device(resolved["device"]), getattr(torch, resolved["dtype"]))


def build_model(resolved: Mapping[str, Any], target: Energy) -> torch.nn.Module:
    """The model of a resolved config, seeded with the config's seed, on its device and dtype."""
    torch.manual_seed(resolved["seed"])
    model = _call(MODELS[resolved["model"]["name"]], resolved["model"], target)
    return model.to(select_device(resolved["device"]), getattr(torch, resolved["dtype"]))


def build_objective(resolved: Mapping[str, Any], target: Energy) -> Any:
    """The objective of the ``[trainer]`` table."""
    return _call(OBJECTIVES[resolved["trainer"]["name"]], resolved["trainer"], target)


def build_training(
    resolved: Mapping[str, Any],
    target: Energy,
    model: torch.nn.Module,
    run_dir: str | Path | None,
    progress: bool = True,
) -> Trainer | TemperatureAnnealing:
    """The training procedure of the ``[trainer]`` table, ready to :meth:`fit`: a
    :class:`~boltzgen.trainers.Trainer` on the table's objective, or the TA-BG protocol.

    Both offer the same ``fit()``, counters (``energy_evaluations``, ``wall_time_s``, ``step``,
    ``skipped``) and ``temperature`` (the one the trained model targets; ``None``: the
    target's own). ``progress=False`` turns the progress bars off whatever the table says.
    """
    table = resolved["trainer"]
    if table["name"] in PROTOCOLS:
        settings = PROTOCOLS[table["name"]].from_params(table)
        settings = settings if progress else settings.without_progress()
        if isinstance(settings, FederationSettings):
            domains = domain_targets(resolved, settings)
            return Federation(model, domains, settings, resolved["seed"], run_dir)
        return TemperatureAnnealing(model, target, settings, run_dir)
    objective = build_objective(resolved, target)
    return Trainer(model, objective, train_settings(resolved, progress), run_dir=run_dir)


def domain_targets(resolved: Mapping[str, Any], settings: FederationSettings) -> list[Energy]:
    """The domain targets of a federated run: the ``[target]`` table with each domain's keys
    replaced, checked like a ``[target]`` table."""
    targets = []
    for overrides in settings.domains:
        table = _resolve_section("target", {**resolved["target"], **overrides})
        targets.append(build_target({**resolved, "target": table}))
    return targets


def train_settings(resolved: Mapping[str, Any], progress: bool = True) -> TrainSettings:
    """The :class:`TrainSettings` part of the ``[trainer]`` table."""
    values = {k: resolved["trainer"][k] for k in _SETTINGS_DEFAULTS}
    values["progress"] = progress and values["progress"]
    return TrainSettings(**values)
