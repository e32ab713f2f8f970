"""The shared training loop: one :class:`Trainer` drives any :class:`Objective`.

Per step: surrogate loss -> backward -> gradient-norm clipping -> a masked Adam update that is
skipped on the device when the loss or gradient is not finite. Nothing in the step reads the
device: diagnostics are accumulated as device tensors and read once every ``log_every`` steps
(for ``metrics.csv`` and the progress bar), the learning-rate schedule and the energy-evaluation
counter are plain Python numbers derived from the step index.

Non-finite numbers: objectives leave samples with a non-finite loss term out of the loss and count
them (``nonfinite_samples``); a step whose loss, gradient or update is still not finite is skipped
(``skipped_steps``). When at least half of the steps of a log interval were skipped, one warning
(:class:`NonFiniteWarning`) says so (again only after an interval with fewer skips); after
``max_nonfinite_steps`` consecutive skipped steps (checked at each log row) training stops with
:class:`NonFiniteTraining`, keeping the last checkpoint. A checkpoint is never written with
non-finite parameters or optimiser moments: the previous one is kept, with a warning.

Checkpoints (``RUN_DIR/checkpoints/last.pt``) hold the model, the optimiser moments, the
objective's state, the RNG states and the counters; :meth:`Trainer.fit` resumes from one exactly:
a run killed after a checkpoint and resumed ends with the same parameters as an uninterrupted run.

Data parallel (under ``torchrun``, :mod:`boltzgen.parallel`): each of the K ranks computes the
loss on ``batch_size / K`` samples of its own random stream, the gradients and the loss are
averaged over ranks by one all-reduce before clipping, so every rank takes the same step (the
skip decision included) and the parameters never drift apart. The diagnostics of a log row are
the mean over ranks of each rank's values; rank 0 alone writes ``metrics.csv``, checkpoints and
the progress bar. A checkpoint holds every rank's RNG and objective state: a resume on the same
K continues every stream exactly; on another K, rank 0 continues its stream and the others
start new ones (objectives that keep per-sample state, such as persistent chains, must resume
on the same K).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import BoltzgenError, Interrupted, Terminated, first_line
from ..io import (
    MetricsLog,
    checkpoint_exists,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from ..parallel import (
    ProcessLost,
    World,
    all_reduce_sum,
    average_gradients,
    broadcast_module,
    broadcast_object,
    collective_failure,
    gather_objects,
    peer_failure_text,
    rank_seed,
    read_on_rank_zero,
    world,
)
from ..ranges import MAX_BATCH, MAX_COUNT, Range, check_fields, field_range
from .objective import NONFINITE_SAMPLES, Objective
from .optim import MaskedAdam, warmup_cosine

__all__ = [
    "TrainSettings",
    "Trainer",
    "TrainingInterrupted",
    "NonFiniteTraining",
    "NonFiniteWarning",
    "ProcessLost",
    "CheckpointWarning",
    "rng_state",
    "set_rng_state",
    "state_for_rank",
]


def rng_state() -> dict[str, Any]:
    """The global torch (and CUDA) RNG states, for checkpoints."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (moved back to the CPU, whatever ``map_location`` did)."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


_CPU = torch.device("cpu")

#: What restoring a checkpoint entry of the wrong shape or type raises (reported as one line).
_RESTORE_ERRORS = (KeyError, RuntimeError, ValueError, TypeError, IndexError, AttributeError)


class TrainingInterrupted(Interrupted):
    """Training was interrupted (Ctrl-C or SIGTERM); a checkpoint was written and the run can be
    resumed."""


class NonFiniteTraining(BoltzgenError):
    """Training stopped: ``max_nonfinite_steps`` consecutive steps were skipped as non-finite."""


class NonFiniteWarning(RuntimeWarning):
    """Many steps are being skipped, or a checkpoint was not written, because of NaN/inf."""


class CheckpointWarning(UserWarning):
    """The run directory records progress but holds no checkpoint: training starts over."""


_COUNT0 = Range(0, MAX_COUNT, integer=True)
_COUNT1 = Range(1, MAX_COUNT, integer=True)
_BATCH = Range(1, MAX_BATCH, integer=True)


@dataclasses.dataclass
class TrainSettings:
    """Optimisation settings shared by all objectives.

    Attributes:
        steps: Number of optimisation steps.
        batch_size: Samples (model samples or data) per step.
        lr: Peak learning rate of Adam.
        warmup_steps: Linear warm-up steps before the cosine decay.
        min_lr_factor: Final learning rate as a fraction of ``lr``.
        weight_decay: Decoupled weight decay.
        grad_clip: Maximum gradient norm (``inf`` disables clipping).
        log_every: Read diagnostics from the device, write a ``metrics.csv`` row and refresh
            the progress bar every this many steps.
        checkpoint_every: Write ``checkpoints/last.pt`` every this many steps (0: only at the end).
        progress: Show a progress bar (rate and ETA).
        max_nonfinite_steps: Stop training (:class:`NonFiniteTraining`) once this many
            consecutive steps were skipped because the loss, gradient or update was not finite
            (checked every ``log_every`` steps).
    """

    steps: int = dataclasses.field(default=1000, metadata=field_range(_COUNT1))
    batch_size: int = dataclasses.field(default=1024, metadata=field_range(_BATCH))
    lr: float = dataclasses.field(default=1e-3, metadata=field_range(Range(0, 10, low_open=True)))
    warmup_steps: int = dataclasses.field(default=0, metadata=field_range(_COUNT0))
    min_lr_factor: float = dataclasses.field(default=0.0, metadata=field_range(Range(0, 1)))
    weight_decay: float = dataclasses.field(default=0.0, metadata=field_range(Range(0, 100)))
    grad_clip: float = dataclasses.field(
        default=100.0, metadata=field_range(Range(0, low_open=True))
    )
    log_every: int = dataclasses.field(default=50, metadata=field_range(_COUNT1))
    checkpoint_every: int = dataclasses.field(default=500, metadata=field_range(_COUNT0))
    progress: bool = True
    max_nonfinite_steps: int = dataclasses.field(default=100, metadata=field_range(_COUNT1))

    def __post_init__(self) -> None:
        check_fields(self, "trainer setting")


class Trainer:
    """Optimise ``model`` under ``objective`` with checkpoints, progress and exact resume.

    Arguments:
        model: The model (flow, RBM, ...): an ``nn.Module`` the objective knows how to use.
        objective: What to minimise (see :class:`~boltzgen.trainers.objective.Objective`).
        settings: Optimisation settings.
        run_dir: Where ``metrics.csv`` and ``checkpoints/`` go; ``None`` keeps nothing on disk.
        stage: A label written in the ``stage`` column of ``metrics.csv`` (for multi-stage
            protocols) and used to name the checkpoint (``checkpoints/{stage or 'last'}.pt``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        objective: Objective,
        settings: TrainSettings,
        run_dir: str | Path | None = None,
        stage: str = "",
    ) -> None:
        minimum = getattr(objective, "min_batch_size", 1)
        if settings.batch_size < minimum:
            raise BoltzgenError(
                f"trainer setting batch_size = {settings.batch_size} is too small: the "
                f"{getattr(objective, 'name', type(objective).__name__)} objective needs at "
                f"least {minimum} samples per step"
            )
        self.world = world()
        if settings.batch_size % self.world.size:
            raise BoltzgenError(
                f"trainer setting batch_size = {settings.batch_size} does not split over "
                f"{self.world.size} processes: give a multiple of {self.world.size}"
            )
        #: Samples per step on this rank (the global batch split evenly over the ranks).
        self.local_batch_size = settings.batch_size // self.world.size
        if self.world.distributed and self.local_batch_size < minimum:
            raise BoltzgenError(
                f"trainer setting batch_size = {settings.batch_size} gives "
                f"{self.local_batch_size} samples per process on {self.world.size} processes; "
                f"the {getattr(objective, 'name', type(objective).__name__)} objective needs "
                f"at least {minimum} per process"
            )
        broadcast_module(model)
        self.model = model
        self.objective = objective
        self.settings = settings
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.stage = stage
        self.optimizer = MaskedAdam(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        device = self.optimizer.accepted.device
        self.step = 0
        self.energy_evaluations = 0
        self.wall_time_s = 0.0
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)
        self.last_diagnostics: dict[str, float] = {}
        #: Skipped steps in a row up to now (device counter, not checkpointed).
        self._consecutive_skips = torch.zeros((), dtype=torch.int64, device=device)
        #: Step and skipped count at the last log row, and whether the skips were warned about.
        self._logged_step, self._logged_skipped, self._warned = 0, 0, False
        #: The step of the checkpoint on disk (``None``: none written or loaded).
        self.checkpoint_step: int | None = None

    @property
    def temperature(self) -> float | None:
        """The temperature the trained model targets (the objective's; ``None``: the target's
        own), as :attr:`TemperatureAnnealing.temperature` states it for the protocol."""
        return self.objective.temperature

    @property
    def checkpoint_path(self) -> Path | None:
        """``RUN_DIR/checkpoints/{stage or 'last'}.pt``, or ``None`` without a run directory."""
        if self.run_dir is None:
            return None
        return self.run_dir / "checkpoints" / f"{self.stage or 'last'}.pt"

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where we are."""
        return {
            "step": self.step,
            "stage": self.stage,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "objective": self.objective.state_dict(),
            "rng": rng_state(),
            "energy_evaluations": self.energy_evaluations,
            "wall_time_s": self.wall_time_s,
            "skipped_steps": self.skipped,
        }

    def _state_of_all_ranks(self) -> dict[str, Any]:
        """:meth:`state_dict` plus, with several ranks, every rank's RNG and objective state
        (``ranks``; a collective: every rank calls it)."""
        state = self.state_dict()
        if self.world.distributed:
            state["ranks"] = gather_objects({"rng": state["rng"], "objective": state["objective"]})
        return state

    def _for_this_rank(self, state: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint ``state`` as this rank continues it (:func:`state_for_rank`)."""
        return state_for_rank(state, self.world, getattr(self.objective, "name", "objective"))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; refuses (one :class:`BoltzgenError` line) a checkpoint of
        another model or stage, or one whose entries do not fit."""
        if state.get("stage", "") != self.stage:
            raise BoltzgenError(
                f"checkpoint is of stage '{state.get('stage')}', not '{self.stage}'"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except _RESTORE_ERRORS as error:
            raise BoltzgenError(
                "checkpoint does not match this model/config "
                f"({first_line(error)}); "
                "use a new run directory or the config the run was started with"
            ) from None
        try:
            self.objective.load_state_dict(state["objective"])
            set_rng_state(state["rng"])
            step = int(state["step"])
            energy_evaluations = int(state["energy_evaluations"])
            wall_time_s = float(state["wall_time_s"])
            self.skipped.copy_(state["skipped_steps"])
        except _RESTORE_ERRORS as error:
            raise BoltzgenError(
                f"checkpoint is incomplete or damaged ({first_line(error)}); restore it from a "
                "copy, or start a new run (another output folder, or move this one away)"
            ) from None
        self.step = step
        self.energy_evaluations = energy_evaluations
        self.wall_time_s = wall_time_s

    def save(self) -> None:
        """Write the checkpoint (atomically) if there is a run directory.

        Model parameters or optimiser moments with a NaN or infinite value are not written: the
        previous checkpoint stays, and a :class:`NonFiniteWarning` says so. (Buffers are not
        checked: they may hold bounds such as ``inf``.)
        """
        if self.checkpoint_path is None:
            return
        state = self._state_of_all_ranks()
        parameters = dict(self.model.named_parameters())  # buffers may hold bounds such as inf
        bad = _nonfinite_entries({"model": parameters, "optimizer": state["optimizer"]})
        if bad:
            kept = (
                f"the previous checkpoint (step {self.checkpoint_step}) is kept"
                if self.checkpoint_step is not None
                else "no checkpoint is written"
            )
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            if self.world.is_main:
                warnings.warn(
                    f"checkpoint {self.checkpoint_path} not written at step {self.step}: "
                    f"{bad[0]}{more} hold NaN or infinite values; {kept}",
                    NonFiniteWarning,
                    stacklevel=2,
                )
            return
        if self.world.is_main:
            save_checkpoint(self.checkpoint_path, state)
        self.checkpoint_step = self.step

    def resume(self) -> bool:
        """Load the checkpoint if one exists; returns whether it did.

        Anything at the checkpoint's path that is not a complete, intact checkpoint (a
        directory, a link to a device, a corrupted or incomplete file) is refused with one
        :class:`BoltzgenError` line. When there is none although ``metrics.csv`` records steps
        of this stage, a :class:`CheckpointWarning` says that training starts over.
        """
        path = self.checkpoint_path
        if path is None:
            return False

        def read() -> dict[str, Any] | None:
            if not checkpoint_exists(path):
                self._warn_lost_progress(path)
                return None
            return load_checkpoint(path, map_location=_CPU, kind="training")

        state = read_on_rank_zero(read)  # the others take it over the group
        if state is None:
            return False
        state = _to_device(state, self.optimizer.accepted.device)
        try:
            self.load_state_dict(self._for_this_rank(state))
        except BoltzgenError as error:
            raise BoltzgenError(f"{path}: {error}") from None
        self.checkpoint_step = self._logged_step = self.step
        self._logged_skipped = int(self.skipped)
        return True

    def _warn_lost_progress(self, path: Path) -> None:
        """Warn when ``metrics.csv`` records steps of this stage that no checkpoint holds."""
        assert self.run_dir is not None
        try:
            rows = MetricsLog(self.run_dir / "metrics.csv").read()
            steps = [int(float(r["step"])) for r in rows if r.get("stage", "") == self.stage]
        except (OSError, KeyError, ValueError, UnicodeDecodeError):
            steps = []
        if steps and max(steps) > 0:
            where = f" of stage {self.stage}" if self.stage else ""
            warnings.warn(
                f"{path} does not exist, although {self.run_dir / 'metrics.csv'} records steps"
                f"{where} up to {max(steps)}: training starts over from step 0 (its rows are "
                "dropped)",
                CheckpointWarning,
                stacklevel=3,
            )

    # -- the loop ----------------------------------------------------------------------------
    def _train_step(self, accumulated: dict[str, torch.Tensor]) -> None:
        s = self.settings
        loss, diagnostics = self.objective.loss(self.model, self.local_batch_size)
        self.optimizer.zero_grad()
        loss.backward()
        loss = average_gradients(self.optimizer.params, loss)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.optimizer.params, s.grad_clip)
        ok = torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
        lr = s.lr * warmup_cosine(self.step, s.steps, s.warmup_steps, s.min_lr_factor)
        accepted = self.optimizer.step(ok, lr=lr)
        self.skipped += (~accepted).to(self.skipped.dtype)
        self._consecutive_skips = torch.where(
            accepted, torch.zeros_like(self._consecutive_skips), self._consecutive_skips + 1
        )
        for name, value in {"loss": loss.detach(), **diagnostics}.items():
            value = value.detach().to(torch.float64)
            accumulated[name] = accumulated.get(name, 0) + torch.where(
                torch.isfinite(value), value, 0
            )
            accumulated[f"_n_{name}"] = accumulated.get(f"_n_{name}", 0) + torch.isfinite(
                value
            ).to(torch.float64)
        self.energy_evaluations += (
            self.objective.energy_evaluations(self.local_batch_size) * self.world.size
        )
        self.step += 1

    def _flush(
        self, accumulated: dict[str, torch.Tensor], log: MetricsLog | None, started: float
    ) -> dict[str, float]:
        names = [n for n in accumulated if not n.startswith("_n_")]
        if not names:
            return {}
        means = torch.stack([accumulated[n] / accumulated[f"_n_{n}"] for n in names])
        means = all_reduce_sum(means) / self.world.size  # the mean over ranks (1: itself)
        values = torch.cat(
            [means, torch.stack([self.skipped, self._consecutive_skips]).to(torch.float64)]
        )
        numbers = values.cpu().tolist()  # the one device read per log interval
        row = {"step": self.step, "stage": self.stage}
        row.update({n: v for n, v in zip(names, numbers)})
        row["skipped_steps"] = int(numbers[-2])
        row["energy_evaluations"] = self.energy_evaluations
        row["wall_time_s"] = self.wall_time_s + (time.perf_counter() - started)
        row["lr"] = self.settings.lr * warmup_cosine(
            self.step - 1,
            self.settings.steps,
            self.settings.warmup_steps,
            self.settings.min_lr_factor,
        )
        if log is not None:
            log.append(row)
        accumulated.clear()
        self._watch_skips(row["skipped_steps"], int(numbers[-1]), row.get(NONFINITE_SAMPLES))
        return {k: v for k, v in row.items() if isinstance(v, (int, float))}

    def _watch_skips(self, skipped: int, consecutive: int, nonfinite: float | None) -> None:
        """At a log row: warn once when at least half of the interval's steps were skipped;
        stop after ``max_nonfinite_steps`` consecutive skipped steps."""
        limit = self.settings.max_nonfinite_steps
        steps, skips = self.step - self._logged_step, skipped - self._logged_skipped
        self._logged_step, self._logged_skipped = self.step, skipped
        samples = (
            f"; {nonfinite:.3g} non-finite samples per step"
            if nonfinite is not None and nonfinite > 0
            else ""
        )
        where = f" (stage {self.stage})" if self.stage else ""
        if consecutive >= limit:
            kept = (
                f"the last checkpoint (step {self.checkpoint_step}) is kept"
                if self.checkpoint_step is not None
                else "no checkpoint was written"
            )
            raise NonFiniteTraining(
                f"training stopped at step {self.step}{where}: the last {consecutive} steps were "
                f"all skipped because the loss, its gradient or the update was not finite "
                f"(max_nonfinite_steps = {limit}{samples}); {kept}: start a new run with a "
                "lower lr, a target with finite energies or a larger max_nonfinite_steps"
            )
        if skips > 0 and 2 * skips >= steps:
            if not self._warned and self.world.is_main:
                warnings.warn(
                    f"{skips} of the last {steps} training steps{where} were skipped (non-finite "
                    f"loss, gradient or update{samples}); training stops after {limit} "
                    "consecutive skipped steps (max_nonfinite_steps)",
                    NonFiniteWarning,
                    stacklevel=3,
                )
            self._warned = True
        else:
            self._warned = False

    def fit(self, resume: bool = True) -> dict[str, float]:
        """Train until ``settings.steps``; returns the last logged diagnostics.

        Raises:
            TrainingInterrupted: On Ctrl-C, after writing a checkpoint.
        """
        main = self.world.is_main
        if self.run_dir is not None and main:  # left by a process killed while writing
            for folder in (self.run_dir, self.run_dir / "checkpoints"):
                remove_stale_temporaries(folder)
        if not (resume and self.resume()):
            self._start_rank_stream()
        log = (
            MetricsLog(self.run_dir / "metrics.csv") if self.run_dir is not None and main else None
        )
        if log is not None:
            log.truncate_after(
                self.step, self.stage
            )  # rows newer than the checkpoint belong to a lost future
        s = self.settings
        self.model.train()
        accumulated: dict[str, torch.Tensor] = {}
        started = time.perf_counter()
        bar = tqdm(
            total=s.steps,
            initial=self.step,
            unit="step",
            desc=self.stage or "train",
            disable=not (s.progress and main),
            dynamic_ncols=True,
            mininterval=1.0,
        )
        try:
            with _interrupts_at_step_boundaries() as interrupted:
                while self.step < s.steps:
                    if self._agreed_stop(interrupted):
                        raise _StopAtBoundary
                    self._train_step(accumulated)
                    if self.step % s.log_every == 0 or self.step == s.steps:
                        self.last_diagnostics = self._flush(accumulated, log, started)
                        bar.update(self.step - bar.n)
                        bar.set_postfix(
                            {
                                k: f"{self.last_diagnostics[k]:.4g}"
                                for k in ("loss", "ess")
                                if k in self.last_diagnostics
                            },
                            refresh=False,
                        )
                    if (
                        s.checkpoint_every
                        and self.step % s.checkpoint_every == 0
                        and self.step < s.steps
                    ):
                        self._checkpoint(started)
                        started = time.perf_counter()
        except _StopAtBoundary:
            self._checkpoint(started)
            bar.close()
            where = (
                f"; resume by running the same command again (checkpoint {self.checkpoint_path})"
                if self.checkpoint_path
                else ""
            )
            raise TrainingInterrupted(
                f"training interrupted at step {self.step}{where}", signal_number(interrupted)
            ) from None
        except NonFiniteTraining:
            bar.close()
            raise
        except RuntimeError as error:
            bar.close()
            if not (self.world.distributed and collective_failure(error)):
                raise
            kept = (
                f"the last checkpoint (step {self.checkpoint_step}) is kept"
                if self.checkpoint_step is not None
                else "no checkpoint was written"
            )
            raise ProcessLost(
                f"rank {self.world.rank} of {self.world.size}: another process of the run "
                f"stopped during step {self.step + 1} ({peer_failure_text(error)}); {kept}: "
                "rerun the same command to resume"
            ) from None
        except KeyboardInterrupt as error:  # a second Ctrl-C inside a step: the last checkpoint
            bar.close()
            raise TrainingInterrupted(
                f"training stopped inside step {self.step + 1}; the last checkpoint is kept",
                signal_number(error),
            ) from None
        bar.close()
        self._checkpoint(started)
        return self.last_diagnostics

    def _agreed_stop(self, interrupted: Any) -> bool:
        """Whether to stop at this step boundary for a deferred Ctrl-C/SIGTERM. One process:
        as soon as one was received. Several: at the next log boundary (where the loop reads
        the device anyway) at which any rank received one, decided by one all-reduce, so that
        all ranks stop at the same step and write one checkpoint together."""
        if not self.world.distributed:
            return interrupted()
        if self.step % self.settings.log_every:
            return False
        flag = torch.tensor([float(interrupted())], device=self.optimizer.accepted.device)
        return bool(all_reduce_sum(flag).cpu()[0] > 0)

    def _start_rank_stream(self) -> None:
        """Training from step 0 on several ranks: ranks other than 0 leave rank 0's random
        stream for their own, derived from it (a collective; nothing on one process)."""
        if not self.world.distributed:
            return
        digest = broadcast_object(_digest(torch.get_rng_state()))
        if self.world.rank:
            torch.manual_seed(rank_seed(digest, self.world.rank))

    def _checkpoint(self, started: float) -> None:
        """Add the time since ``started`` to the wall time and save."""
        self.wall_time_s += time.perf_counter() - started
        self.save()


def state_for_rank(
    state: dict[str, Any], current: World, objective: str = "objective"
) -> dict[str, Any]:
    """A checkpoint ``state`` with this rank's RNG and objective state in place of rank 0's.

    Its own when the checkpoint has as many ranks (``state["ranks"]``) as run now; else rank 0
    keeps its stream and the others start fresh ones derived from it (seeded here). An
    objective with per-rank state cannot change the number of ranks (one-line
    :class:`BoltzgenError` naming ``objective``).
    """
    ranks = state.get("ranks", [{"rng": state.get("rng"), "objective": state.get("objective")}])
    if len(ranks) == current.size:
        return {**state, **ranks[current.rank]}
    if any(entry.get("objective") for entry in ranks):
        raise BoltzgenError(
            f"the checkpoint was written by {len(ranks)} processes and its {objective} "
            f"objective keeps per-process state; resume on {len(ranks)} processes"
        )
    if current.rank == 0:
        return state
    torch.manual_seed(rank_seed(_digest(state["rng"]["torch"]), current.rank))
    return {**state, "rng": rng_state()}


def _digest(generator_state: torch.Tensor) -> int:
    """A 63-bit integer fingerprint of a CPU generator state (to derive other ranks' seeds)."""
    return (
        int.from_bytes(hashlib.sha256(generator_state.numpy().tobytes()).digest()[:8], "little")
        >> 1
    )


def _to_device(value: Any, device: torch.device) -> Any:
    """``value`` (a nested checkpoint state) with its tensors moved to ``device``; RNG states
    are moved back to the CPU by :func:`set_rng_state`."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(item, device) for item in value)
    return value


def _nonfinite_entries(state: dict[str, Any], prefix: str = "") -> list[str]:
    """Names (``model.layer.weight``, ``optimizer.exp_avg.3``) of the floating-point tensors in
    a nested state that hold a NaN or infinite value; one device read per call."""
    named: list[tuple[str, torch.Tensor]] = []

    def collect(value: Any, name: str) -> None:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                named.append((name, value))
        elif isinstance(value, dict):
            for key, item in value.items():
                collect(item, f"{name}.{key}" if name else str(key))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                collect(item, f"{name}.{index}")

    collect(state, prefix)
    if not named:
        return []
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).cpu().tolist()
    return [name for (name, _), ok in zip(named, finite) if not ok]


class _StopAtBoundary(Exception):
    """Internal: Ctrl-C was pressed and the current step has finished."""


def signal_number(interrupt: Any) -> int:
    """The signal behind an interrupt: a :class:`Terminated` or ``KeyboardInterrupt``
    exception, or the ``interrupted`` function of :func:`_interrupts_at_step_boundaries`."""
    if callable(interrupt) and not isinstance(interrupt, BaseException):
        return interrupt.signal_number
    return signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT


@contextlib.contextmanager
def _interrupts_at_step_boundaries():
    """Defer Ctrl-C and SIGTERM to the next step boundary, so that a checkpoint never holds half
    a step.

    Yields a function that tells whether one was received (its ``signal_number`` attribute
    says which). A second one interrupts at once (``KeyboardInterrupt``, or
    :class:`~boltzgen.errors.Terminated` for SIGTERM). Outside the main thread (where signal
    handlers cannot be set) interrupts are not deferred.
    """
    received: list[int] = []

    def interrupted() -> bool:
        return bool(received)

    interrupted.signal_number = signal.SIGINT  # type: ignore[attr-defined]
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def handler(signum, frame):
        if received:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        received.append(signum)
        interrupted.signal_number = signum  # type: ignore[attr-defined]

    previous = {
        number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield interrupted
    finally:
        for number, action in previous.items():
            signal.signal(number, action)
