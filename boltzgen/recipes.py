"""From a resolved config to objects: the registries of targets, models and objectives.

Each table of a config (``[target]``, ``[model]``, ``[trainer]``) names a factory registered
here. A factory's keyword arguments and their defaults *are* the table's schema: unknown keys
and values of the wrong type are refused with one line, and :func:`resolve_config` fills in every
default so that the run directory records exactly what ran.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .config import TOP_LEVEL_DEFAULTS
from .energy.base import Energy
from .energy.toy import DoubleWell, GaussianMixture2D, ManyWell
from .errors import BoltzgenError
from .trainers.annealing import AnnealingSettings
from .trainers.forward_kl import ForwardKL
from .trainers.loop import TrainSettings
from .trainers.reverse_kl import ReverseKL

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
    "select_device",
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
PROTOCOLS: dict[str, type] = {"tabg": AnnealingSettings}
_REGISTRIES = {"target": TARGETS, "model": MODELS, "trainer": OBJECTIVES}
#: Positional context arguments of model/objective factories (not config keys).
_CONTEXT = {"target"}


def register(section: str, name: str) -> Callable[[Callable], Callable]:
    """Decorator registering a factory for ``[section] name = ...``."""
    registry = _REGISTRIES[section]

    def decorate(factory: Callable) -> Callable:
        registry[name] = factory
        return factory

    return decorate


def _parameters(factory: Callable) -> dict[str, tuple[Any, str]]:
    """Config keys of a factory: name -> (default or ``inspect.Parameter.empty``, annotation text)."""
    params = inspect.signature(factory).parameters
    return {n: (p.default, str(p.annotation)) for n, p in params.items() if n not in _CONTEXT}


_SETTINGS_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainSettings)}
_SETTINGS_SCHEMA = {f.name: (f.default, str(f.type)) for f in dataclasses.fields(TrainSettings)}


def _check_value(section: str, key: str, value: Any, annotation: str) -> Any:
    """Check ``value`` against the factory's annotation (``int``, ``float``, ``str``, ``bool``, ``list``)."""
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
        raise BoltzgenError(f"[{section}] {key} = {value!r}: expected a {kind}")
    return float(value) if kind == "float" else value


def _resolve_section(section: str, table: Mapping[str, Any]) -> dict[str, Any]:
    registry = {**OBJECTIVES, **PROTOCOLS} if section == "trainer" else _REGISTRIES[section]
    name = table["name"]
    if name not in registry:
        raise BoltzgenError(
            f"[{section}] name = {name!r} is unknown; choose one of: {', '.join(sorted(registry))}"
        )
    if section == "trainer" and name in PROTOCOLS:
        schema = {
            f.name: (
                f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty,
                str(f.type),
            )
            for f in dataclasses.fields(PROTOCOLS[name])
        }
    else:
        schema = _parameters(registry[name])
    if section == "trainer" and name not in PROTOCOLS:
        schema = {**_SETTINGS_SCHEMA, **schema}
    unknown = sorted(set(table) - set(schema) - {"name"})
    if unknown:
        raise BoltzgenError(
            f"[{section}] unknown key(s) for '{name}': {', '.join(unknown)}; allowed: {', '.join(sorted(schema))}"
        )
    resolved: dict[str, Any] = {"name": name}
    for key, (default, annotation) in schema.items():
        if key in table:
            resolved[key] = _check_value(section, key, table[key], annotation)
        elif default is not inspect.Parameter.empty:
            resolved[key] = default
        else:
            raise BoltzgenError(f"[{section}] '{name}' needs the key '{key}'")
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
    if resolved["sample"]["n"] < 1:
        raise BoltzgenError("[sample] n must be at least 1")
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


def select_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else CPU; an explicit CUDA device that is missing is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BoltzgenError(
            f"device = '{name}' but CUDA is not available here; use device = 'auto' or 'cpu'"
        )
    return torch.device(name)


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


def train_settings(resolved: Mapping[str, Any], progress: bool = True) -> TrainSettings:
    """The :class:`TrainSettings` part of the ``[trainer]`` table."""
    values = {k: resolved["trainer"][k] for k in _SETTINGS_DEFAULTS}
    values["progress"] = progress and values["progress"]
    return TrainSettings(**values)


# -- targets -------------------------------------------------------------------------------
@register("target", "gaussian-mixture")
def _gaussian_mixture(
    n_modes: int = 8, radius: float = 3.0, sigma: float = 0.3, weights: str = "uniform"
) -> Energy:
    """8 modes on a ring of radius 3 (sigma 0.3); weights 'uniform' or 'skewed' (1:2:...:K)."""
    if weights not in ("uniform", "skewed"):
        raise BoltzgenError(f"[target] weights must be 'uniform' or 'skewed', got {weights!r}")
    w = None if weights == "uniform" else GaussianMixture2D.skewed_weights(n_modes)
    return GaussianMixture2D(n_modes=n_modes, radius=radius, sigma=sigma, weights=w)


@register("target", "double-well")
def _double_well(
    dim: int = 2, n_wells: int = 1, a: float = 1.0, b: float = -6.0, c: float = -0.5
) -> Energy:
    return DoubleWell(dim=dim, n_wells=n_wells, a=a, b=b, c=c)


@register("target", "many-well")
def _many_well(n_pairs: int = 16) -> Energy:
    return ManyWell(n_pairs=n_pairs)


# -- models ---------------------------------------------------------------------------------
@register("model", "coupling-flow")
def _coupling_flow(
    target: Energy,
    n_layers: int = 8,
    hidden: int = 128,
    depth: int = 2,
    bins: int = 8,
    mask: str = "alternating",
    prior_scale: float = 1.0,
    seed: int = 0,
) -> torch.nn.Module:
    """Spline coupling flow over the target's real features with a N(0, prior_scale^2) prior."""
    from .flows import CouplingFlow, make_prior, real

    if target.is_discrete or len(target.event_shape) != 1:
        raise BoltzgenError(
            "[model] coupling-flow needs a continuous target with flat states (event_shape (d,))"
        )
    domains = [real()] * target.dim
    prior = make_prior(domains, kind="normal", loc=0.0, scale=prior_scale)
    return CouplingFlow(
        domains,
        n_layers=n_layers,
        hidden=hidden,
        depth=depth,
        bins=bins,
        prior=prior,
        mask=mask,
        seed=seed,
    )


# -- objectives -----------------------------------------------------------------------------
@register("trainer", "reverse-kl")
def _reverse_kl(
    target: Energy,
    temperature: float | None = None,
    energy_cap: float | None = None,
    drop_top_k: int = 0,
) -> Any:
    return ReverseKL(target, temperature=temperature, energy_cap=energy_cap, drop_top_k=drop_top_k)


@register("trainer", "forward-kl")
def _forward_kl(
    target: Energy, data: str = "exact", n_data: int = 100_000, data_key: str = "samples"
) -> Any:
    """Maximum likelihood on ``data``: a file (.pt/.npy/.npz) or 'exact' samples of the target."""
    from .io import load_samples

    if data == "exact":
        sampler = getattr(target, "sample", None)
        if sampler is None:
            raise BoltzgenError(
                f"[trainer] data = 'exact', but the target {type(target).__name__} has no exact sampler; give a data file"
            )
        samples = sampler(n_data)
    else:
        samples = load_samples(data, key=data_key)
    return ForwardKL(samples)


# -- molecules ------------------------------------------------------------------------------
@register("target", "molecule")
def _molecule(
    system: str = "",
    pdb: str = "",
    sequence: str = "",
    forcefield: list | None = None,
    solvent: str | None = None,
    constraints: str | None = None,
    temperature: float | None = None,
    energy: str = "torch",
) -> Energy:
    """A molecule (exactly one of ``system`` = catalog name, ``pdb`` = path, ``sequence``) and its energy.

    ``energy``: ``"torch"`` (the compiled torch force field; falls back to OpenMM with a warning
    for unsupported forces), ``"torch-compile"`` (the same through ``torch.compile``: faster,
    after a compile of 30-80 s per batch shape) or ``"openmm"`` (the OpenMM bridge). The energy's own temperature is
    the molecule's (K); ``[trainer] temperature`` is in K too.
    """
    from .commands.molecule_args import molecule_from_spec
    from .energy.forcefield.molecule_energy import ENERGY_CHOICES, energy_for_molecule

    sources = {"name": system, "pdb": pdb, "sequence": sequence}
    spec = {key: value for key, value in sources.items() if value}
    options = {
        "forcefield": forcefield,
        "solvent": solvent,
        "constraints": constraints,
        "temperature": temperature,
    }
    spec.update({key: value for key, value in options.items() if value is not None})
    if energy not in ENERGY_CHOICES:
        raise BoltzgenError(
            f"[target] energy must be one of {', '.join(ENERGY_CHOICES)}; got {energy!r}"
        )
    molecule = molecule_from_spec(spec)
    target = energy_for_molecule(molecule, prefer=energy)
    target.molecule = molecule
    return target


@register("model", "molecular-flow")
def _molecular_flow(
    target: Energy,
    n_layers: int = 16,
    hidden: int = 256,
    depth: int = 5,
    bins: int = 8,
    mask: str = "random",
    chirality: str = "constrain",
    seed: int = 0,
) -> torch.nn.Module:
    """TA-BG's internal-coordinate spline flow around the molecule's minimised structure."""
    from .molecular_flow import MolecularFlow

    molecule = getattr(target, "molecule", None)
    if molecule is None:
        raise BoltzgenError(
            '[model] molecular-flow needs a molecule target ([target] name = "molecule")'
        )
    return MolecularFlow(
        molecule,
        n_layers=n_layers,
        hidden=hidden,
        depth=depth,
        bins=bins,
        mask=mask,
        chirality=chirality,
        seed=seed,
    )


from . import recipes_discrete  # noqa: E402, F401  (registers the discrete targets, model and objectives)
