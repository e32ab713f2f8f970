"""Reduced energies and forces of an OpenMM ``System``, with gradients for torch.

OpenMM evaluates one configuration per call, so a batch is a loop over configurations, either in
this process (``n_workers=1``) or split over a pool of worker processes, each with its own
``Context``. Workers run :mod:`boltzgen.energy.openmm_worker` as a script, so they never
import torch. The pool has an explicit lifecycle: use the energy as a context manager or call
:meth:`OpenMMEnergy.close`; leftover workers are daemon processes that are also stopped at
interpreter exit, and a worker that dies raises :class:`~boltzgen.errors.BoltzgenError` instead
of hanging the caller. So does a worker that stops answering (frozen, swapped out, stopped by a
signal): each answer must come within a deadline derived from the measured time per
configuration (:class:`ResultDeadline`); past it the pool is closed and every worker process is
stopped.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import runpy
import time
import weakref
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

import numpy as np
import openmm
import torch
from torch import Tensor

from ..errors import BoltzgenError
from ..molecule.units import BOLTZMANN_CONSTANT
from . import openmm_worker
from .base import Energy
from .openmm_worker import ContextEvaluator

if TYPE_CHECKING:
    from ..molecule.molecule import Molecule

__all__ = ["OpenMMEnergy", "PLATFORMS", "ResultDeadline"]

#: OpenMM platforms that can be requested by name.
PLATFORMS = ("Reference", "CPU", "CUDA", "OpenCL")
#: Seconds between liveness checks of the workers while waiting for their results.
_POLL_SECONDS = 0.2
#: Seconds a worker gets to build its Context before the pool gives up.
_START_TIMEOUT_SECONDS = 120.0
#: Seconds a closing pool waits for its workers to exit after asking, then after SIGTERM.
_CLOSE_GRACE_SECONDS = 1.0


def _check_platform(name: str) -> None:
    try:
        openmm.Platform.getPlatformByName(name)
    except Exception:
        available = [
            openmm.Platform.getPlatform(i).getName()
            for i in range(openmm.Platform.getNumPlatforms())
        ]
        raise BoltzgenError(
            f"OpenMM platform {name!r} is not available here: choose one of {', '.join(available)}"
        ) from None


@dataclasses.dataclass(frozen=True)
class ResultDeadline:
    """How long the pool waits for a worker's answer before it calls the worker frozen.

    A worker given ``n`` configurations must answer within ``floor_s + factor * n * t``
    seconds of the request, where ``t`` is the largest time per configuration measured so far
    (any worker, any batch: request to answer, transfers included). Before the first answer
    of a pool there is no measurement and no deadline; the first answer of a batch gives one
    for the other workers of the same batch.

    Attributes:
        factor: Multiple of the expected time (default 10: a worker may be 10x slower than the
            slowest batch seen, e.g. on a loaded machine).
        floor_s: Seconds added to every deadline (default 60), so that small batches and
            scheduling hiccups never trip it.
    """

    factor: float = 10.0
    floor_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("factor", "floor_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BoltzgenError(f"result deadline {name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise BoltzgenError(
                    f"result deadline {name} = {value!r} is out of range: use a finite number > 0"
                )

    def seconds(self, n_configurations: int, seconds_per_configuration: float) -> float:
        """The deadline, in seconds after the request, for ``n_configurations``."""
        return self.floor_s + self.factor * n_configurations * seconds_per_configuration


class _WorkerPool:
    """``n`` spawned worker processes, each evaluating its share of a batch."""

    def __init__(
        self, system_xml: str, platform: str, n_workers: int, deadline: ResultDeadline
    ) -> None:
        self._deadline = deadline
        #: Largest measured seconds per configuration (``None`` until the first answer).
        self._seconds_per_configuration: float | None = None
        context = multiprocessing.get_context("spawn")
        self._connections: list[Connection] = []
        self._processes: list[Any] = []
        for _ in range(n_workers):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=runpy.run_path,
                args=(openmm_worker.__file__,),
                kwargs={
                    "run_name": openmm_worker.WORKER_RUN_NAME,
                    "init_globals": {"WORKER_ARGUMENTS": (child_end, system_xml, platform)},
                },
                daemon=True,
            )
            process.start()
            child_end.close()
            self._connections.append(parent_end)
            self._processes.append(process)
        for rank in range(n_workers):
            kind, message = self._receive(rank, timeout=_START_TIMEOUT_SECONDS)
            if kind == "error":
                self.close()
                raise BoltzgenError(f"OpenMM worker {rank} could not start: {message}")

    def evaluate(self, positions: np.ndarray, forces: bool) -> tuple[np.ndarray, np.ndarray]:
        """Split the batch over the workers; same contract as :meth:`ContextEvaluator.evaluate`."""
        if not self._processes:
            raise BoltzgenError(
                "the OpenMM energy's worker pool is closed: create a new OpenMMEnergy"
            )
        chunks = np.array_split(positions, len(self._processes))
        sizes = {rank: len(chunk) for rank, chunk in enumerate(chunks) if len(chunk)}
        sent = time.monotonic()
        for rank in sizes:
            self._send(rank, (chunks[rank], forces))
        results = self._gather(sizes, sent)
        return np.concatenate([results[r][0] for r in sizes]), np.concatenate(
            [results[r][1] for r in sizes]
        )

    def _gather(self, sizes: dict[int, int], sent: float) -> dict[int, Any]:
        """Answers of the workers ``sizes`` (rank: number of configurations) asked at ``sent``
        (monotonic seconds), waiting on them together so that a dead worker is noticed at once
        and a frozen one at its deadline."""
        pending = {self._connections[rank]: rank for rank in sizes}
        results: dict[int, Any] = {}
        while pending:
            for connection in wait(list(pending), timeout=_POLL_SECONDS):
                rank = pending.pop(connection)
                results[rank] = self._receive(rank)[1]
                measured = (time.monotonic() - sent) / sizes[rank]
                self._seconds_per_configuration = max(
                    measured, self._seconds_per_configuration or 0.0
                )
            waited = time.monotonic() - sent
            for rank in pending.values():
                if not self._processes[rank].is_alive():
                    self._fail(rank)
                if self._seconds_per_configuration is not None:
                    limit = self._deadline.seconds(sizes[rank], self._seconds_per_configuration)
                    if waited > limit:
                        self._fail(
                            rank,
                            f"did not answer within {limit:.3g} s ({sizes[rank]} configurations; "
                            f"deadline {self._deadline.floor_s:g} s + {self._deadline.factor:g} x "
                            f"the measured {self._seconds_per_configuration:.3g} s per "
                            "configuration)",
                        )
        return results

    def _send(self, rank: int, request: Any) -> None:
        try:
            self._connections[rank].send(request)
        except (OSError, ValueError):
            self._fail(rank)

    def _receive(self, rank: int, timeout: float | None = None) -> tuple[str, Any]:
        """Wait for worker ``rank``'s answer, checking that it is alive (no hang if it died)."""
        connection, process, waited = self._connections[rank], self._processes[rank], 0.0
        while not connection.poll(_POLL_SECONDS):
            waited += _POLL_SECONDS
            if not process.is_alive() or (timeout is not None and waited > timeout):
                self._fail(rank)
        try:
            return connection.recv()
        except (EOFError, OSError):
            self._fail(rank)

    def _fail(self, rank: int, state: str | None = None) -> None:
        """Close the pool and raise the one-line error about worker ``rank``."""
        process = self._processes[rank]
        if state is not None:
            process.kill()  # frozen: asking it to stop would only wait out the grace periods
        else:
            process.join(timeout=_POLL_SECONDS)
            state = (
                "did not answer"
                if process.exitcode is None
                else f"died (exit code {process.exitcode})"
            )
        self.close()
        raise BoltzgenError(
            f"OpenMM worker process {rank} (pid {process.pid}) {state}; the pool is closed "
            "and its workers are stopped: create a new OpenMMEnergy (check memory limits and "
            "machine load, or use n_workers=1 to see the error)"
        )

    def close(self) -> None:
        """Stop all workers: ask politely, then SIGTERM, then SIGKILL (which also ends a
        stopped or frozen process), each step waiting for all of them together; idempotent."""
        connections, processes = self._connections, self._processes
        self._connections, self._processes = [], []
        for connection in connections:
            try:
                connection.send(None)
            except (OSError, ValueError):
                pass
        for stop in (None, "terminate", "kill"):
            alive = [process for process in processes if process.is_alive()]
            if stop is not None:
                for process in alive:
                    getattr(process, stop)()
            ends = time.monotonic() + _CLOSE_GRACE_SECONDS
            for process in alive:
                process.join(timeout=None if stop == "kill" else max(ends - time.monotonic(), 0))
        for connection in connections:
            connection.close()


def _close_pool(pool: _WorkerPool) -> None:
    pool.close()


class OpenMMEnergy(Energy):
    """Reduced energy u(x) = U(x)/kT of an OpenMM ``System``, differentiable through forces.

    The gradient is -F(x)/kT, computed by OpenMM in float64 and returned in the input's dtype
    and device. Coordinates are copied to the host (this bridge runs on the CPU anyway).
    Configurations with non-finite coordinates (or that OpenMM cannot evaluate) get +inf energy
    and zero gradient.

    Arguments:
        system: The OpenMM ``System`` (particle i = atom i).
        temperature: T in K; k_B = ``openmm.unit.MOLAR_GAS_CONSTANT_R``.
        n_atoms: Number of atoms N; defaults to the system's particle count.
        platform: ``"Reference"``, ``"CPU"`` (one thread per context), ``"CUDA"`` or ``"OpenCL"``.
        n_workers: 1 evaluates in this process; more spawns that many worker processes
            (own a pool: use ``with OpenMMEnergy(...) as energy:`` or call :meth:`close`).
        deadline: When a worker of the pool counts as frozen (:class:`ResultDeadline`; the
            default allows 60 s + 10x the slowest measured time per configuration).

    Example:
        >>> import torch
        >>> from boltzgen import Molecule
        >>> molecule = Molecule.from_catalog("alanine-dipeptide-vacuum")
        >>> x = torch.as_tensor(molecule.positions).expand(4, -1, -1)  # (batch, N, 3) in nm
        >>> with OpenMMEnergy.from_molecule(molecule, n_workers=2) as target:
        ...     u = target.energy(x)  # (batch,) reduced energies in kT
        >>> tuple(u.shape)
        (4,)
    """

    def __init__(
        self,
        system: openmm.System,
        temperature: float,
        n_atoms: int | None = None,
        platform: str = "CPU",
        n_workers: int = 1,
        molecule: Molecule | None = None,
        deadline: ResultDeadline = ResultDeadline(),
    ) -> None:
        n_particles = system.getNumParticles()
        n_atoms = n_particles if n_atoms is None else int(n_atoms)
        if n_atoms != n_particles:
            raise BoltzgenError(
                f"n_atoms={n_atoms} but the OpenMM System has {n_particles} particles"
            )
        if platform not in PLATFORMS:
            raise BoltzgenError(
                f"unknown OpenMM platform {platform!r}: choose one of {', '.join(PLATFORMS)}"
            )
        if int(n_workers) != n_workers or n_workers < 1:
            raise BoltzgenError(f"n_workers must be a positive integer, got {n_workers!r}")
        super().__init__((n_atoms, 3), temperature, molecule=molecule)
        self.platform = platform
        self.n_workers = int(n_workers)
        self.kT = BOLTZMANN_CONSTANT * self.temperature
        _check_platform(platform)  # fail here, with the available platforms, not in a worker
        system_xml = openmm.XmlSerializer.serialize(system)
        if self.n_workers == 1:
            self._evaluator: ContextEvaluator | _WorkerPool = ContextEvaluator(
                system_xml, platform
            )
        else:
            self._evaluator = _WorkerPool(system_xml, platform, self.n_workers, deadline)
            # Runs at close(), at garbage collection, or at interpreter exit (atexit).
            self._finalizer = weakref.finalize(self, _close_pool, self._evaluator)

    @classmethod
    def from_molecule(
        cls,
        molecule: Molecule,
        platform: str = "CPU",
        n_workers: int = 1,
        deadline: ResultDeadline = ResultDeadline(),
    ) -> OpenMMEnergy:
        """The energy of a :class:`~boltzgen.molecule.Molecule` at its own temperature."""
        return cls(
            molecule.system,
            molecule.temperature,
            molecule.n_atoms,
            platform,
            n_workers,
            molecule,
            deadline,
        )

    def evaluate(
        self, positions: np.ndarray, forces: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw OpenMM energies and forces of a batch.

        Arguments:
            positions: Shape ``(batch, N, 3)`` in nm (converted to float64).
            forces: Whether to compute forces (otherwise an empty ``(batch, 0, 3)`` array).

        Returns:
            Energies in kJ/mol, shape ``(batch,)``, and forces in kJ/mol/nm, ``(batch, N, 3)``.
        """
        return self._evaluator.evaluate(np.asarray(positions, dtype=np.float64), forces)

    def _energy(self, x: Tensor) -> Tensor:
        return _ReducedEnergy.apply(x, self)

    def close(self) -> None:
        """Stop the worker processes (no-op for ``n_workers=1``); the energy is unusable after."""
        if isinstance(self._evaluator, _WorkerPool):
            self._finalizer()

    def __enter__(self) -> OpenMMEnergy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, platform={self.platform!r}, n_workers={self.n_workers}"


class _ReducedEnergy(torch.autograd.Function):
    """u = U/kT with backward -F/kT (float64 inside, cast back to the input's dtype/device)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, energy: OpenMMEnergy) -> Tensor:
        positions = x.detach().to("cpu", torch.float64).numpy()
        energies, forces = energy.evaluate(positions, forces=ctx.needs_input_grad[0])
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(torch.from_numpy(forces / -energy.kT).to(x.device, x.dtype))
        return torch.from_numpy(energies / energy.kT).to(x.device, x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (gradient,) = ctx.saved_tensors
        return grad_output[:, None, None] * gradient, None
