r"""The temperature-annealed Boltzmann generator (TA-BG, Schopmans & Friederich 2025).

Reverse KL at the target temperature is mode-seeking: a flow that starts in one metastable state
stays there. TA-BG trains where the landscape is flat and walks the flow down to the target:

1. **Pretraining** (stage ``"pretrain"``): reverse KL (:class:`~boltzgen.trainers.ReverseKL`)
   at a high temperature T_0 = T_high, where the barriers are low and no mode is lost.
2. **Annealing** down the geometric ladder T_k = T_high (T_low / T_high)^(k / n_rungs),
   k = 1 .. n_rungs, then ``extra_final_rungs`` further steps at T_low. Rung k draws N samples
   from the current flow (which models T_{k-1}), weights them by
   log w = -u_{T_k}(x) - log q(x), drops NaN weights, clips the largest fraction of log-weights
   to the k-th largest, resamples a buffer of M samples with replacement
   (:mod:`boltzgen.trainers.reweighting`), and trains by maximum likelihood on the buffer
   (:class:`~boltzgen.trainers.ForwardKL`) with a fresh Adam and a cosine schedule restarted
   for the rung (stage ``"anneal-{k}-T{T_k}"``).

Every stage runs in the shared :class:`~boltzgen.trainers.Trainer`, so each has its checkpoint
``RUN_DIR/checkpoints/{stage}.pt`` and its rows in ``metrics.csv``. A rung's buffer is saved
(``checkpoints/buffer-{stage}.pt``, with the RNG state after drawing it) before its training
starts and deleted when the rung is done; ``RUN_DIR/ladder.json`` records the finished stages
with the buffer statistics (ESS of the importance weights, dropped and clipped counts) and the
cumulative counters. A run killed anywhere resumes from there and ends with the same parameters
as an uninterrupted run (same device, same settings). The final model is also written to
``checkpoints/last.pt`` (what :func:`boltzgen.runs.load_run` reads).

Energy evaluations counted: one per pretraining sample (as for plain reverse KL) plus N per rung
(every buffer sample, including those whose weight is dropped). Maximum likelihood on a buffer
evaluates no energy. Evaluations of a buffer draw that was interrupted and redone are not counted
twice.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..energy.base import Energy
from ..errors import BoltzgenError, first_line
from ..io import (
    MetricsLog,
    checkpoint_exists,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    write_json,
)
from ..parallel import (
    all_reduce_sum,
    collective_failure,
    peer_failure_text,
    read_on_rank_zero,
    world,
)
from ..ranges import MAX_BATCH, MAX_COUNT, Range, check_fields, field_range
from ..samplers.importance import BufferStatistics, draw_weighted_samples, resample_buffer
from ..samplers.sharded import local_share
from .forward_kl import ForwardKL
from .loop import (
    ProcessLost,
    Trainer,
    TrainingInterrupted,
    TrainSettings,
    rng_state,
    set_rng_state,
    signal_number,
    state_for_rank,
)
from .reverse_kl import ReverseKL

__all__ = [
    "AnnealingSettings",
    "TemperatureAnnealing",
    "temperature_ladder",
    "rung_stage",
]

PRETRAIN_STAGE = "pretrain"
#: Settings that may change when a run is resumed (they do not change the result).
_COSMETIC = ("progress", "log_every", "checkpoint_every")


def _recorded(settings: AnnealingSettings) -> dict[str, Any]:
    """The settings ``ladder.json`` records and a resume compares (no cosmetic keys)."""
    return {
        key: value
        for key, value in settings.to_params().items()
        if value is not None and not any(key.endswith(c) for c in _COSMETIC)
    }


def temperature_ladder(
    t_high: float, t_low: float, n_rungs: int, extra_final_rungs: int = 0
) -> list[float]:
    """The annealing ladder [T_0, ..., T_n, T_low, ...].

    T_k = T_high (T_low / T_high)^(k / n_rungs) for k = 0 .. n_rungs (T_0 = T_high, T_n = T_low
    exactly), followed by ``extra_final_rungs`` copies of T_low. Rung k anneals from T_{k-1} to
    T_k.

    Arguments:
        t_high: Pretraining temperature (target units, e.g. K).
        t_low: Final temperature, at most ``t_high``.
        n_rungs: Geometric steps from T_high to T_low (9 in TA-BG).
        extra_final_rungs: Further T_low -> T_low steps (1 in TA-BG).

    Returns:
        ``n_rungs + 1 + extra_final_rungs`` temperatures.
    """
    if not (0 < t_low <= t_high and math.isfinite(t_high)):
        raise BoltzgenError(
            f"TA-BG anneals down: need 0 < t_low <= t_high, got t_high={t_high}, t_low={t_low}"
        )
    if n_rungs < 1 or extra_final_rungs < 0:
        raise BoltzgenError(
            f"need n_rungs >= 1 and extra_final_rungs >= 0, got {n_rungs} and {extra_final_rungs}"
        )
    ratio = t_low / t_high
    ladder = [t_high * ratio ** (k / n_rungs) for k in range(n_rungs)] + [float(t_low)]
    return ladder + [float(t_low)] * extra_final_rungs


def rung_stage(k: int, temperature: float) -> str:
    """Stage name of rung ``k`` (1-based) that anneals to ``temperature``: ``anneal-{k}-T{T}``."""
    return f"anneal-{k}-T{temperature:.6g}"


#: Loop settings that one key sets for both stages (the keys of configs written before the
#: stages had their own; ``pretrain_<key>`` or ``rung_<key>`` overrides it for one stage).
SHARED_LOOP_KEYS = (
    "min_lr_factor",
    "weight_decay",
    "grad_clip",
    "log_every",
    "checkpoint_every",
    "progress",
)
_STAGES = ("pretrain", "rung")
#: Temperatures in the target's units (K for molecules, multiples of its own T for toys).
_TEMPERATURE = Range(0, 1e6, low_open=True)


def _default_pretrain() -> TrainSettings:
    return TrainSettings(
        steps=100_000, batch_size=256, lr=1e-4, warmup_steps=1000, weight_decay=1e-5
    )


def _default_rung() -> TrainSettings:
    return TrainSettings(steps=30_000, batch_size=2048, lr=5e-6, warmup_steps=0, weight_decay=1e-5)


@dataclasses.dataclass
class AnnealingSettings:
    """Settings of the TA-BG protocol; the defaults are the published alanine-dipeptide ones.

    The two optimisation stages hold their own :class:`~boltzgen.trainers.TrainSettings`
    (steps, batch size, learning rate and schedule, weight decay, clipping, logging); the
    protocol's own settings are the ladder and the buffer.

    Attributes:
        t_high: Pretraining temperature (target units: K for molecules, 1 = own T for toys).
        t_low: Final temperature; ``None``: the target's own temperature.
        n_rungs: Geometric steps from ``t_high`` down to ``t_low``.
        extra_final_rungs: Further steps at ``t_low``.
        energy_cap: Smooth logarithmic energy cap of the pretraining loss (kT), ``None``: off.
        drop_top_k: Highest energies of each pretraining batch left out of the loss.
        buffer_samples: N, model samples drawn per rung (each one energy evaluation).
        resample_size: M, size of the buffer resampled with replacement.
        clip_fraction: Fraction of the largest log-weights clipped to the k-th largest.
        chunk_size: Samples per model/energy call when drawing the N samples.
        pretrain: Loop settings of the reverse-KL pretraining at ``t_high`` (default 1e5 steps
            of 256 samples, lr 1e-4 with 1000 warm-up steps, weight decay 1e-5).
        rung: Loop settings of each rung's maximum likelihood on its buffer (the cosine period;
            default 3e4 steps of 2048 samples, lr 5e-6, weight decay 1e-5).

    In a ``[trainer] name = "tabg"`` table the stage settings are flat keys ``pretrain_<key>``
    and ``rung_<key>`` (:meth:`config_keys`); a key of :data:`SHARED_LOOP_KEYS` without prefix
    sets both stages.
    """

    t_high: float = dataclasses.field(metadata=field_range(_TEMPERATURE))
    t_low: float | None = dataclasses.field(default=None, metadata=field_range(_TEMPERATURE))
    n_rungs: int = dataclasses.field(default=9, metadata=field_range(Range(1, 1000, integer=True)))
    extra_final_rungs: int = dataclasses.field(
        default=1, metadata=field_range(Range(0, 1000, integer=True))
    )
    energy_cap: float | None = dataclasses.field(
        default=None, metadata=field_range(Range(-1e12, 1e12))
    )
    drop_top_k: int = dataclasses.field(
        default=10, metadata=field_range(Range(0, MAX_BATCH, integer=True))
    )
    buffer_samples: int = dataclasses.field(
        default=5_000_000, metadata=field_range(Range(1, MAX_COUNT, integer=True))
    )
    resample_size: int = dataclasses.field(
        default=2_000_000, metadata=field_range(Range(1, MAX_COUNT, integer=True))
    )
    clip_fraction: float = dataclasses.field(
        default=1e-4, metadata=field_range(Range(0, 1, high_open=True))
    )
    chunk_size: int = dataclasses.field(
        default=65_536, metadata=field_range(Range(1, MAX_BATCH, integer=True))
    )
    pretrain: TrainSettings = dataclasses.field(default_factory=_default_pretrain)
    rung: TrainSettings = dataclasses.field(default_factory=_default_rung)

    def __post_init__(self) -> None:
        check_fields(self, "TA-BG setting")
        if self.drop_top_k >= self.pretrain.batch_size:
            raise BoltzgenError(
                f"TA-BG setting drop_top_k = {self.drop_top_k} is out of range: allowed an "
                f"integer below pretrain_batch_size ({self.pretrain.batch_size})"
            )

    @classmethod
    def config_keys(cls) -> dict[str, tuple[Any, str]]:
        """The keys of a ``tabg`` table: name -> (default or ``inspect.Parameter.empty``,
        annotation text), as the registry reads them."""
        keys: dict[str, tuple[Any, str]] = {}
        for f in dataclasses.fields(cls):
            if f.name in _STAGES:
                continue
            default = (
                f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
            )
            keys[f.name] = (default, str(f.type))
        stage_defaults = {"pretrain": _default_pretrain(), "rung": _default_rung()}
        for stage, defaults in stage_defaults.items():
            for f in dataclasses.fields(TrainSettings):
                keys[f"{stage}_{f.name}"] = (getattr(defaults, f.name), str(f.type))
        for key in SHARED_LOOP_KEYS:
            keys[key] = (None, f"{keys[f'rung_{key}'][1]} | None")
        return keys

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AnnealingSettings:
        """Settings from a ``[trainer]`` table (its ``name`` ignored); unknown keys are refused.

        A stage key (``pretrain_lr``) wins over a shared key (``weight_decay``), which wins over
        the default.
        """
        keys = cls.config_keys()
        unknown = sorted(set(params) - set(keys) - {"name"})
        if unknown:
            raise BoltzgenError(
                f"[trainer] unknown key(s) for 'tabg': {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(keys))}"
            )
        if "t_high" not in params:
            raise BoltzgenError(
                "[trainer] 'tabg' needs the key 't_high' (the pretraining temperature)"
            )
        stages = {"pretrain": _default_pretrain(), "rung": _default_rung()}
        for stage in _STAGES:
            values = {k: params[k] for k in SHARED_LOOP_KEYS if params.get(k) is not None}
            values.update(
                {
                    f.name: params[f"{stage}_{f.name}"]
                    for f in dataclasses.fields(TrainSettings)
                    if params.get(f"{stage}_{f.name}") is not None
                }
            )
            stages[stage] = dataclasses.replace(stages[stage], **values)
        own = {
            f.name: params[f.name]
            for f in dataclasses.fields(cls)
            if f.name not in _STAGES and f.name in params
        }
        return cls(**own, **stages)

    def to_params(self) -> dict[str, Any]:
        """The flat ``tabg`` table of these settings (stage keys; shared keys unset)."""
        params: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in _STAGES
        }
        for stage in _STAGES:
            for key, value in dataclasses.asdict(getattr(self, stage)).items():
                params[f"{stage}_{key}"] = value
        params.update(dict.fromkeys(SHARED_LOOP_KEYS))
        return params

    def without_progress(self) -> AnnealingSettings:
        """A copy with the progress bars of both stages off."""
        return dataclasses.replace(
            self,
            pretrain=dataclasses.replace(self.pretrain, progress=False),
            rung=dataclasses.replace(self.rung, progress=False),
        )


class TemperatureAnnealing:
    """Run the TA-BG protocol on a model: reverse-KL pretraining, then the annealing ladder.

    Arguments:
        model: A flow with ``sample_and_log_prob(n)`` (reparameterised) and ``log_prob(x)``.
        target: The target energy (continuous).
        settings: The protocol's settings.
        run_dir: Where checkpoints, ``metrics.csv`` and ``ladder.json`` go (``None``: nothing
            on disk, no resume).
        on_rung: Called with each finished rung's record (a dict, as in ``ladder.json``).

    After :meth:`fit`, like a :class:`~boltzgen.trainers.Trainer`: ``energy_evaluations``,
    ``wall_time_s``, ``step`` (optimisation steps of all stages) and ``skipped`` (skipped
    steps) are the cumulative counters; ``temperature`` is the final temperature T_low;
    ``record`` is the content of ``ladder.json``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        target: Energy,
        settings: AnnealingSettings,
        run_dir: str | Path | None = None,
        on_rung: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.model = model
        self.target = target
        self.settings = settings
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.on_rung = on_rung
        self.world = world()
        if settings.resample_size % self.world.size or settings.buffer_samples < self.world.size:
            raise BoltzgenError(
                f"TA-BG settings buffer_samples = {settings.buffer_samples} and resample_size = "
                f"{settings.resample_size} do not split over {self.world.size} processes: give "
                f"at least {self.world.size} samples and a resample_size that is a multiple "
                f"of {self.world.size}"
            )
        self.temperature = float(
            settings.t_low if settings.t_low is not None else target.temperature
        )
        self.temperatures = temperature_ladder(
            settings.t_high, self.temperature, settings.n_rungs, settings.extra_final_rungs
        )
        self.energy_evaluations = 0
        self.wall_time_s = 0.0
        self.step = 0
        self.skipped = 0
        self.record: dict[str, Any] = {
            "settings": _recorded(settings),
            "temperatures": self.temperatures,
            "pretrain": None,
            "rungs": [],
            "complete": False,
        }

    @property
    def stages(self) -> list[str]:
        """Stage names in order: ``"pretrain"``, then one per rung."""
        return [PRETRAIN_STAGE] + [
            rung_stage(k, t) for k, t in enumerate(self.temperatures[1:], start=1)
        ]

    def _path(self, name: str) -> Path | None:
        return None if self.run_dir is None else self.run_dir / name

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- bookkeeping ---------------------------------------------------------------------------
    def _load_record(self) -> None:
        """Read ``ladder.json`` (rank 0; the others receive it) and check it is this run's."""
        path = self._path("ladder.json")
        if path is None:
            return
        saved = read_on_rank_zero(lambda: json.loads(path.read_text()) if path.is_file() else None)
        if saved is None:
            return
        # Read back through from_params: records written before the stages had their own
        # settings (shared keys) compare equal when they describe the same protocol.
        try:
            recorded = _recorded(AnnealingSettings.from_params(saved.get("settings") or {}))
        except BoltzgenError:  # not a settings record of this protocol
            recorded = None
        if recorded != self.record["settings"] or saved.get("temperatures") != self.temperatures:
            raise BoltzgenError(
                f"{path} records a TA-BG run with other settings; use a new run directory "
                "or the settings the run was started with"
            )
        self.record = saved

    def _write_record(self) -> None:
        path = self._path("ladder.json")
        if path is not None and self.world.is_main:
            write_json(path, self.record)

    def _counters(self) -> dict[str, Any]:
        return {
            "energy_evaluations": self.energy_evaluations,
            "wall_time_s": self.wall_time_s,
            "steps": self.step,
            "skipped_steps": self.skipped,
        }

    def _take_counters(self, trainer: Trainer, steps_before: int, skipped_before: int) -> None:
        self.energy_evaluations = trainer.energy_evaluations
        self.wall_time_s = trainer.wall_time_s
        self.step = steps_before + trainer.step
        self.skipped = skipped_before + int(trainer.skipped)

    def _restore_completed(self) -> None:
        """Load the model, RNG and counters at the end of the last finished stage."""
        done = ([self.record["pretrain"]] if self.record["pretrain"] else []) + self.record[
            "rungs"
        ]
        if not done or self.run_dir is None:  # without a run directory the model is already there
            return
        last = done[-1]
        path = self.run_dir / "checkpoints" / f"{last['stage']}.pt"
        state = read_on_rank_zero(  # the others' run folder may be on another node
            lambda: load_checkpoint(path, map_location="cpu", kind="stage-end")
        )
        try:
            self.model.load_state_dict(state["model"])
            set_rng_state(state_for_rank(state, self.world)["rng"])
        except (RuntimeError, ValueError, TypeError) as error:
            raise BoltzgenError(
                f"{path} does not fit this run ({first_line(error)}); "
                "use a new run directory or the settings the run was started with"
            ) from None
        self.energy_evaluations = int(last["energy_evaluations"])
        self.wall_time_s = float(last["wall_time_s"])
        self.step = int(last["steps"])
        self.skipped = int(last["skipped_steps"])

    # -- stages --------------------------------------------------------------------------------
    def _pretrain(self) -> None:
        s = self.settings
        objective = ReverseKL(
            self.target,
            temperature=self.temperatures[0],
            energy_cap=s.energy_cap,
            drop_top_k=s.drop_top_k,
        )
        trainer = Trainer(self.model, objective, s.pretrain, self.run_dir, PRETRAIN_STAGE)
        last = trainer.fit()
        self._take_counters(trainer, 0, 0)
        self.record["pretrain"] = {
            "stage": PRETRAIN_STAGE,
            "temperature": self.temperatures[0],
            "loss": last.get("loss"),
            "ess": last.get("ess"),
            **self._counters(),
        }
        self._write_record()

    def _buffer_path(self, stage: str) -> Path | None:
        """This rank's buffer checkpoint: ``checkpoints/buffer-{stage}.pt`` on one process,
        ``buffer-{stage}.rank{r}-of-{K}.pt`` on K (each rank saves and reads its own share)."""
        ranks = self.world
        share = f".rank{ranks.rank}-of-{ranks.size}" if ranks.distributed else ""
        return self._path(f"checkpoints/buffer-{stage}{share}.pt")

    def _saved_buffer(self, stage: str) -> dict[str, Any] | None:
        """The buffer an interrupted run saved, when every rank has its share (else ``None``:
        draw it again); a damaged share stops every rank with one line."""
        path = self._buffer_path(stage)
        state, problem = None, None
        if path is not None and checkpoint_exists(path):
            try:
                state = load_checkpoint(path, map_location=self._device, kind="buffer")
                state["statistics"] = BufferStatistics(**state["statistics"])
            except BoltzgenError as error:
                problem = str(error)
            except TypeError as error:  # statistics of another version
                problem = (
                    f"checkpoint {path} is incomplete or damaged ({first_line(error)}); "
                    "delete it to draw the buffer again"
                )
        flags = torch.tensor([float(state is not None), float(problem is not None)])
        loaded, damaged = all_reduce_sum(flags.to(self._device)).tolist()
        if problem is not None:
            raise BoltzgenError(problem)
        if damaged:
            raise BoltzgenError(
                f"the saved buffer of stage {stage} is damaged on another process; delete "
                f"{self.run_dir / 'checkpoints'}/buffer-{stage}.* to draw it again"
            )
        return state if loaded == self.world.size else None

    def _buffer(self, stage: str, temperature: float) -> tuple[Tensor, BufferStatistics]:
        """This rank's share of the rung's buffer: loaded if saved by an interrupted run, else
        drawn (this rank's share of the N samples), resampled over all ranks and saved."""
        saved = self._saved_buffer(stage)
        if saved is not None:
            try:
                set_rng_state(saved["rng"])
            except (RuntimeError, ValueError, TypeError) as error:
                raise BoltzgenError(
                    f"the saved buffer of stage {stage} has an unusable RNG state "
                    f"({first_line(error)}); delete {self.run_dir / 'checkpoints'}/"
                    f"buffer-{stage}.* to draw it again"
                ) from None
            self.energy_evaluations = int(saved["energy_evaluations"])
            self.wall_time_s = float(saved["wall_time_s"])
            return saved["samples"], saved["statistics"]
        s = self.settings
        started = time.perf_counter()
        n = local_share(s.buffer_samples, self.world.rank, self.world.size)
        drawn = draw_weighted_samples(self.model, self.target, n, temperature, s.chunk_size)
        buffer, stats = resample_buffer(drawn, s.resample_size, s.clip_fraction)
        del drawn
        self.energy_evaluations += s.buffer_samples
        self.wall_time_s += time.perf_counter() - started
        path = self._buffer_path(stage)
        if path is not None:
            save_checkpoint(
                path,
                {
                    "stage": stage,
                    "samples": buffer,
                    "statistics": dataclasses.asdict(stats),
                    "rng": rng_state(),
                    "energy_evaluations": self.energy_evaluations,
                    "wall_time_s": self.wall_time_s,
                },
            )
        if self.run_dir is not None and self.world.is_main:
            MetricsLog(self.run_dir / "metrics.csv").append(
                {
                    "step": 0,
                    "stage": stage,
                    "ess": stats.ess,
                    "energy_evaluations": self.energy_evaluations,
                    "wall_time_s": self.wall_time_s,
                }
            )
        return buffer, stats

    def _remove_buffers(self, stage: str) -> None:
        """Delete the finished rung's buffer: this rank's share, and on rank 0 every share
        (also those an interrupted run on another number of processes left)."""
        path = self._buffer_path(stage)
        if path is None:
            return
        path.unlink(missing_ok=True)
        if self.world.is_main:
            for share in path.parent.glob(f"buffer-{stage}.*"):
                share.unlink(missing_ok=True)

    def _rung(self, k: int) -> None:
        stage = rung_stage(k, self.temperatures[k])
        buffer, stats = self._buffer(stage, self.temperatures[k])
        trainer = Trainer(self.model, ForwardKL(buffer), self.settings.rung, self.run_dir, stage)
        trainer.energy_evaluations = self.energy_evaluations  # cumulative counters in metrics.csv
        trainer.wall_time_s = self.wall_time_s
        steps_before, skipped_before = self.step, self.skipped
        last = trainer.fit()
        self._take_counters(trainer, steps_before, skipped_before)
        entry = {
            "rung": k,
            "stage": stage,
            "sample_temperature": self.temperatures[k - 1],
            "temperature": self.temperatures[k],
            **dataclasses.asdict(stats),
            "nll": last.get("loss"),
            **self._counters(),
        }
        self.record["rungs"].append(entry)
        self._write_record()
        self._remove_buffers(stage)
        if self.on_rung is not None:
            self.on_rung(entry)

    def _save_final(self) -> None:
        self.record["complete"] = True
        self._write_record()
        path = self._path("checkpoints/last.pt")
        if path is not None and self.world.is_main:
            save_checkpoint(
                path,
                {
                    "stage": "",
                    "protocol": "tabg",
                    "model": self.model.state_dict(),
                    "rng": rng_state(),
                    **self._counters(),
                },
            )

    def fit(self) -> dict[str, float]:
        """Run (or resume) the whole protocol; returns the last rung's NLL and buffer ESS and the
        counters.

        Raises:
            TrainingInterrupted: On Ctrl-C (within a stage or between stages); rerun to resume.
        """
        self._load_record()
        if self.run_dir is not None and self.world.is_main:  # left by a killed process
            for folder in (self.run_dir, self.run_dir / "checkpoints"):
                remove_stale_temporaries(folder)
        try:
            self._restore_completed()
            if self.record["pretrain"] is None:
                self._pretrain()
            for k in range(len(self.record["rungs"]) + 1, len(self.temperatures)):
                self._rung(k)
        except KeyboardInterrupt as error:
            where = (
                f"; resume by running the same command again ({self.run_dir})"
                if self.run_dir
                else ""
            )
            raise TrainingInterrupted(
                f"TA-BG interrupted after {len(self.record['rungs'])} rung(s){where}",
                signal_number(error),
            ) from None
        except RuntimeError as error:
            if not (self.world.distributed and collective_failure(error)):
                raise
            raise ProcessLost(
                f"rank {self.world.rank} of {self.world.size}: another process of the TA-BG run "
                f"stopped after {len(self.record['rungs'])} rung(s) ({peer_failure_text(error)}); "
                "rerun the same command to resume"
            ) from None
        self._save_final()
        last = self.record["rungs"][-1]
        return {
            "loss": last["nll"],
            "ess": last["ess"],
            "temperature": self.temperature,
            **self._counters(),
        }
