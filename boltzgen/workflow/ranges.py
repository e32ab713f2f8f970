"""Allowed ranges of the numeric config keys of the registered targets, models and objectives.

A key means the same thing in every table that has it (``temperature`` is a temperature, ``L``
a lattice side), so ranges are declared by key name, with a per-factory entry where one factory
needs a tighter bound (SK couplings grow as N^2). The loop settings (``steps``, ``lr``, ...) and
the TA-BG settings declare their ranges on their dataclass fields (:mod:`boltzgen.ranges`);
:func:`key_range` reads those too, so the registry checks every numeric key before anything is
built or written. ``tests/test_config_ranges.py`` checks that every int and float key of every
registered factory has a range.
"""

from __future__ import annotations

import dataclasses

from ..ranges import MAX_BATCH, MAX_COUNT, MAX_SEED, Range
from ..trainers.annealing import AnnealingSettings
from ..trainers.loop import TrainSettings

__all__ = ["KEY_RANGES", "FACTORY_RANGES", "SAMPLE_COUNT", "SCHEDULE_BETA", "key_range"]

_COUPLING = Range(-1e6, 1e6)
_POSITIVE = Range(0, 1e6, low_open=True)
_SEED = Range(0, MAX_SEED, integer=True)


def _count(low: int, high: int = MAX_COUNT) -> Range:
    return Range(low, high, integer=True)


#: Key name -> range, for every table that has the key.
KEY_RANGES: dict[str, Range] = {
    # temperatures (K for molecules, multiples of the own temperature for toys) and couplings
    "temperature": _POSITIVE,
    "beta": Range(0, 1e3),
    "J": _COUPLING,
    "h": _COUPLING,
    "a": _COUPLING,
    "b": _COUPLING,
    "c": _COUPLING,
    "energy_cap": Range(-1e12, 1e12),
    # sizes of targets
    "L": _count(2, 1024),
    "n": _count(1, 10**6),
    "q": _count(2, 256),
    "n_visible": _count(1, 10**5),
    "n_hidden": _count(1, 10**5),
    "dim": _count(1, 10**5),
    "n_modes": _count(1, 10**4),
    "n_pairs": _count(1, 10**4),
    "n_wells": _count(1, 10**4),
    "radius": Range(0, 1e6),
    "sigma": _POSITIVE,
    "init_std": Range(0, 1e3),
    # models
    "hidden": _count(1, 65_536),
    "width": _count(1, 65_536),
    "half_kernel_size": _count(1, 64),
    "hidden_half_kernel_size": _count(1, 64),
    "n_layers": _count(1, 1024),
    "depth": _count(1, 64),
    "bins": _count(1, 1024),
    "bound": _POSITIVE,
    "prior_scale": _POSITIVE,
    "seed": _SEED,
    "data_seed": _SEED,
    # objectives
    "drop_top_k": _count(0, MAX_BATCH),
    "n_data": _count(1),
    "k_steps": _count(1, 10**6),
    "beta_anneal": Range(0, 1, high_open=True),
    "steps_per_beta": _count(1),
    "mcmc_burn_in": _count(0),
    "mcmc_chains": _count(1, MAX_BATCH),
    "mcmc_replicas": _count(1, 10**4),
    "mcmc_thin": _count(1, 10**6),
    "skew_lambda": Range(0, 1, high_open=True),
    "mix_alpha": Range(0, 1, high_open=True),
    # cumulant GAN and Renyi
    "gamma": Range(0, 1e3),
    "alpha": Range(0, 1, high_open=True),
    "d_steps": _count(1, 1000),
    "d_hidden": _count(1, 65_536),
    "d_depth": _count(1, 64),
    "d_seed": _SEED,
    "d_lr": Range(0, 10, low_open=True),
    "clip_value": _POSITIVE,
    "gp_weight": Range(0, 1e6),
    "likelihood_weight": Range(0, 1e6),
    # distillation and federated learning
    "teacher_samples": _count(0, 10**8),
    "ppo_epochs": _count(1, 1000),
    "clip_ratio": Range(0, 1, low_open=True, high_open=True),
    "clients": _count(1, 10**5),
    "rounds": _count(1),
    "local_steps": _count(1),
    "samples_per_client": _count(1, 10**8),
    "distill_weight": Range(0, 1e6),
    "rank_fraction": Range(0, 1, low_open=True),
}

#: (section, factory name, key) -> range, where a factory needs other bounds than the key's.
FACTORY_RANGES: dict[tuple[str, str, str], Range] = {
    ("target", "sk", "n"): _count(1, 10**4),  # N^2 couplings
    ("model", "made", "depth"): _count(0, 64),  # 0: the linear autoregressive model
}

#: Each entry of ``[trainer] betas`` (a reverse-kl-score schedule): an inverse temperature > 0.
SCHEDULE_BETA = Range(0, 1e3, low_open=True)

#: ``[sample] n`` and ``boltzgen sample -n``: samples drawn at the end of a run.
SAMPLE_COUNT = _count(1)

_SETTINGS_FIELDS = {f.name: f for f in dataclasses.fields(TrainSettings)}
_ANNEALING_FIELDS = {f.name: f for f in dataclasses.fields(AnnealingSettings)}
_STAGE_PREFIXES = ("pretrain_", "rung_")


def key_range(section: str, name: str, key: str) -> Range | None:
    """The range of ``[section] key`` of the factory ``name`` (``None``: not a numeric key)."""
    if (section, name, key) in FACTORY_RANGES:
        return FACTORY_RANGES[section, name, key]
    if section == "trainer":
        if name == "tabg" and key in _ANNEALING_FIELDS:
            return _ANNEALING_FIELDS[key].metadata.get("range")
        field_name = key
        for prefix in _STAGE_PREFIXES:
            if name == "tabg" and key.startswith(prefix):
                field_name = key[len(prefix) :]
        if field_name in _SETTINGS_FIELDS:
            return _SETTINGS_FIELDS[field_name].metadata.get("range")
    return KEY_RANGES.get(key)
