"""A run folder for long MD: settings, atomic checkpoints, frame chunks, resume.

Layout of a folder ``DIR``:

- ``settings.json``: what the run is (molecule, ladder, MD settings, seed); a rerun with other
  settings is refused, a rerun with the same settings resumes.
- ``checkpoint.pt``: positions, velocities, forces, energies, step, RNG state and exchange
  counters (:func:`boltzgen.io.save_checkpoint`, written atomically).
- ``chunks/frames-STEP.npz``: the observations reported up to step STEP since the previous chunk
  (``step`` ``(n,)``, ``positions`` ``(n, C, N, 3)`` float32 nm of the target-temperature chains,
  ``reduced_energies`` ``(n, C)``, ``potential_energies`` and ``kinetic_temperatures``
  ``(n, R)``), each written atomically before the checkpoint that covers it; chunks newer than
  the checkpoint are deleted on resume.

On several ranks (a ``torchrun`` launch, :class:`ReplicaExchangeMD` spread over them) every rank
runs the same calls; rank 0 alone holds the folder's lock, reads (and broadcasts) the
checkpoint, writes chunks and checkpoints and shows progress. A rank that dies stops the others
with one :class:`~boltzgen.parallel.ProcessLost` line; the rerun resumes from the last
checkpoint, on any number of ranks.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import BoltzgenError
from ..io import (
    RunDir,
    atomic_write,
    checkpoint_exists,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from ..parallel import ProcessLost, collective_failure, peer_failure_text, read_on_rank_zero, world
from .simulation import ReplicaExchangeMD

__all__ = ["MDRun"]

_OBSERVABLES = ("positions", "reduced_energies", "potential_energies", "kinetic_temperatures")


class MDRun:
    """Drive a :class:`ReplicaExchangeMD` in a folder with checkpoints and resume.

    Arguments:
        directory: The run folder (created if needed). Claiming it, resuming and running hold
            its lock (:meth:`~boltzgen.io.RunDir.lock`), so another process cannot write to
            it at the same time.
        settings: JSON-able description of the run; must equal the folder's ``settings.json``
            when there is one.
    """

    def __init__(self, directory: str | os.PathLike[str], settings: Mapping[str, Any]) -> None:
        self.directory = Path(directory)
        self.settings = json.loads(json.dumps(dict(settings)))
        self.checkpoint_path = self.directory / "checkpoint.pt"
        self.chunk_dir = self.directory / "chunks"
        self._folder = RunDir(self.directory, "settings.json")
        self.world = world()
        read_on_rank_zero(self._claim)
        self.wall_time_s = 0.0

    def _claim(self) -> None:
        with self._folder.lock():
            self._folder.claim(self.settings)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The folder's lock on rank 0 (the one that writes); nothing on the other ranks."""
        with self._folder.lock() if self.world.is_main else contextlib.nullcontext():
            yield

    def resume_or_start(self, simulation: ReplicaExchangeMD, positions: np.ndarray) -> bool:
        """Load the checkpoint or start (:meth:`_resume_or_start`), holding the folder's lock."""
        with self._locked():
            return self._resume_or_start(simulation, positions)

    def _resume_or_start(self, simulation: ReplicaExchangeMD, positions: np.ndarray) -> bool:
        """Load the checkpoint into ``simulation`` if there is one (returns ``True``), else start
        it from ``positions`` ``(N, 3)`` nm. Chunks newer than the checkpoint are deleted, and so
        are temporary files that a process killed while writing left behind.

        Raises:
            BoltzgenError: The checkpoint is corrupted, incomplete or not a file; or it is
                missing although more than one chunk was recorded (a killed run leaves at most
                one chunk without a checkpoint), so that starting over would delete frames.
        """
        saved = read_on_rank_zero(self._read_checkpoint)
        if saved is None:
            simulation.start(positions)
            return False
        try:
            simulation.load_state_dict(saved["simulation"])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as error:
            text = str(error).strip()
            raise BoltzgenError(
                f"checkpoint {self.checkpoint_path} does not fit this recording "
                f"({text.splitlines()[0][:160] if text else type(error).__name__}); move the "
                "folder away or use another output folder"
            ) from None
        # "wall_time": the key of checkpoints written before it was wall_time_s
        self.wall_time_s = float(saved.get("wall_time_s", saved.get("wall_time", 0.0)))
        if self.world.is_main:
            for chunk in self._chunks():
                if _chunk_step(chunk) > simulation.step:
                    chunk.unlink()
        return True

    def _read_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint (rank 0), or ``None`` after clearing the chunks of a run that wrote
        none; temporary files of a killed writer are removed first (see
        :meth:`_resume_or_start`)."""
        for folder in (self.directory, self.chunk_dir):
            remove_stale_temporaries(folder)
        if checkpoint_exists(self.checkpoint_path):
            return load_checkpoint(self.checkpoint_path, kind="md")
        chunks = self._chunks()
        if len(chunks) > 1:
            raise BoltzgenError(
                f"{self.checkpoint_path} does not exist, although {self.chunk_dir} holds "
                f"{len(chunks)} chunks up to step {_chunk_step(chunks[-1])}: the recording "
                "cannot be resumed; move the folder away or use another output folder"
            )
        for chunk in chunks:
            chunk.unlink()
        return None

    def run(
        self,
        simulation: ReplicaExchangeMD,
        total_steps: int,
        report_every: int,
        checkpoint_every: int,
        progress: bool = True,
    ) -> None:
        """Advance the simulation (:meth:`_run`), holding the folder's lock.

        Raises:
            ProcessLost: Another rank of the run stopped (the last checkpoint is kept).
        """
        with self._locked():
            try:
                self._run(simulation, total_steps, report_every, checkpoint_every, progress)
            except RuntimeError as error:
                if not (self.world.distributed and collective_failure(error)):
                    raise
                raise ProcessLost(
                    f"rank {self.world.rank} of {self.world.size}: another process of the run "
                    f"stopped near step {simulation.step} ({peer_failure_text(error)}); the last "
                    "checkpoint is kept: rerun the same command to resume"
                ) from None

    def _run(
        self,
        simulation: ReplicaExchangeMD,
        total_steps: int,
        report_every: int,
        checkpoint_every: int,
        progress: bool,
    ) -> None:
        """Advance to ``total_steps``, observing every ``report_every`` steps and writing a chunk
        plus checkpoint every ``checkpoint_every`` steps (rounded up to whole reports) and at the
        end.

        Shows a tqdm progress bar (steps, rate, ETA) on stderr when ``progress``.
        """
        if report_every < 1 or checkpoint_every < 1:
            raise BoltzgenError("report and checkpoint intervals must be at least 1 step")
        if total_steps % report_every:
            raise BoltzgenError(
                f"the number of steps ({total_steps}) must be a multiple of the report interval "
                f"({report_every})"
            )
        reports_per_chunk = max(1, -(-checkpoint_every // report_every))
        buffer: list[dict[str, np.ndarray]] = []
        bar = tqdm(
            total=total_steps,
            initial=simulation.step,
            unit="step",
            disable=not (progress and self.world.is_main),
            dynamic_ncols=True,
        )
        try:
            while simulation.step < total_steps:
                started = time.perf_counter()
                simulation.advance(report_every)
                observation = simulation.observe()  # synchronises with the device
                self.wall_time_s += time.perf_counter() - started
                buffer.append({"step": np.asarray(simulation.step), **observation})
                bar.update(report_every)
                if len(buffer) == reports_per_chunk or simulation.step >= total_steps:
                    self._write_chunk(buffer, simulation)
                    buffer = []
        finally:
            bar.close()

    def _write_chunk(
        self, buffer: list[dict[str, np.ndarray]], simulation: ReplicaExchangeMD
    ) -> None:
        state = simulation.state_dict()  # a collective on several ranks
        if not self.world.is_main:
            return
        arrays = {
            key: np.stack([entry[key] for entry in buffer]) for key in ("step", *_OBSERVABLES)
        }
        self.chunk_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.chunk_dir / f"frames-{simulation.step:012d}.npz") as handle:
            np.savez(handle, **arrays)
        save_checkpoint(
            self.checkpoint_path, {"simulation": state, "wall_time_s": self.wall_time_s}
        )

    def frames(self) -> dict[str, np.ndarray]:
        """All recorded observations in step order (see the module docstring for the arrays;
        rank 0, which wrote them)."""
        chunks = self._chunks()
        if not chunks:
            raise BoltzgenError(
                f"{self.directory} has no recorded frames yet: run some steps first"
            )
        parts = []
        for chunk in chunks:
            with np.load(chunk) as archive:
                parts.append({key: archive[key] for key in archive.files})
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def _chunks(self) -> list[Path]:
        return (
            sorted(self.chunk_dir.glob("frames-*.npz"), key=_chunk_step)
            if self.chunk_dir.is_dir()
            else []
        )


def _chunk_step(path: Path) -> int:
    return int(path.stem.split("-")[1])
