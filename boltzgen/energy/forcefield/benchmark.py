"""Throughput of energy + force evaluation: OpenMM per configuration vs the batched torch force
field.

Every measurement counts energy+force evaluations per second of one process: OpenMM's CPU platform
(one thread) in a ``setPositions`` + ``getState(energy, forces)`` loop, the OpenMM bridge with
1 and with N worker processes, and :class:`TorchForceField` energies with a backward pass at
given batch sizes, dtypes and devices: ``torch`` (the pair terms' hand-written derivatives, the
default) and ``torch-autograd`` (autograd throughout, the reference) on the CPU.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import openmm
import torch

from ..base import Energy
from ..openmm_bridge import OpenMMEnergy
from .compile import compile_system

__all__ = [
    "Measurement",
    "openmm_platforms",
    "benchmark_molecule",
    "format_table",
    "measure_rate",
    "time_openmm",
    "time_torch",
]


@dataclass
class Measurement:
    """One throughput number (for MD, ``evaluations_per_second`` counts replica-steps/s: one
    force evaluation per replica and step; ``batch`` is the number of replicas)."""

    molecule: str
    backend: str
    device: str
    dtype: str
    batch: int
    workers: int
    evaluations_per_second: float
    first_call_seconds: float

    def to_dict(self) -> dict:
        """Plain JSON-ready dictionary."""
        return asdict(self)


def openmm_platforms() -> list[str]:
    """OpenMM platforms the benchmark uses that this installation has: ``CPU`` and ``CUDA``."""
    names = {
        openmm.Platform.getPlatform(k).getName() for k in range(openmm.Platform.getNumPlatforms())
    }
    return [name for name in ("CPU", "CUDA") if name in names]


def measure_rate(
    step: Callable[[], None],
    per_step: int,
    seconds: float,
    synchronize: Callable[[], None] = lambda: None,
) -> tuple[float, float]:
    """Evaluations per second of ``step`` (``per_step`` evaluations each) after one warm-up call,
    and the duration of that first call (s; includes any compilation)."""
    start = time.perf_counter()
    step()
    synchronize()
    first = time.perf_counter() - start
    start, count = time.perf_counter(), 0
    while count < 3 or time.perf_counter() - start < seconds:
        step()
        count += 1
        synchronize()
    return count * per_step / (time.perf_counter() - start), first


def _configurations(positions: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` thermal-looking copies of a structure (0.005 nm noise), shape ``(n, N, 3)``, nm."""
    return positions[None] + np.random.default_rng(seed).normal(
        scale=0.005, size=(n, *positions.shape)
    )


def time_openmm(
    system: openmm.System, positions: np.ndarray, seconds: float, platform: str = "CPU"
) -> tuple[float, float]:
    """Energy+force evaluations/s of OpenMM, one configuration per call: the CPU platform with
    one thread, or the CUDA platform (``platform = "CUDA"``, mixed precision)."""
    properties = {"Threads": "1"} if platform == "CPU" else {"Precision": "mixed"}
    context = openmm.Context(
        system,
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName(platform),
        properties,
    )
    frames = itertools.cycle(_configurations(positions, 64))

    def step() -> None:
        context.setPositions(next(frames))
        context.getState(getEnergy=True, getForces=True)

    return measure_rate(step, 1, seconds)


def time_torch(
    forcefield: Energy,
    positions: np.ndarray,
    batch: int,
    dtype: torch.dtype,
    device: torch.device,
    seconds: float,
) -> tuple[float, float]:
    """Energy+force (autograd backward) evaluations/s of an :class:`Energy` at one batch size."""
    forcefield = forcefield.to(device=device, dtype=dtype)
    x = torch.as_tensor(_configurations(positions, batch), dtype=dtype, device=device)

    def step() -> None:
        forcefield.energy(x.detach().requires_grad_(True)).sum().backward()

    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return measure_rate(step, batch, seconds, synchronize)


def _time_bridge(
    system: openmm.System, temperature: float, positions: np.ndarray, workers: int, seconds: float
) -> tuple[float, float]:
    with OpenMMEnergy(system, temperature, platform="CPU", n_workers=workers) as bridge:
        return time_torch(bridge, positions, 256, torch.float64, torch.device("cpu"), seconds)


def benchmark_molecule(
    name: str,
    system: openmm.System,
    positions: np.ndarray,
    temperature: float,
    batches: tuple[int, ...] = (1024, 8192),
    workers: tuple[int, ...] = (1,),
    gpu_batches: tuple[int, ...] = (1000, 10_000, 100_000, 1_000_000),
    seconds: float = 2.0,
    compiled: bool = False,
) -> list[Measurement]:
    """All throughput measurements of one molecule.

    Arguments:
        name: Label of the molecule.
        system: Its OpenMM System.
        positions: A (minimised) structure, shape ``(N, 3)``, nm.
        temperature: K.
        batches: Torch CPU batch sizes (float32 and float64 each, ``torch`` and
            ``torch-autograd``).
        workers: Worker counts of the OpenMM bridge (batch 256, CPU platform).
        gpu_batches: Torch GPU batch sizes, measured when CUDA is available.
        seconds: Minimum duration of each measurement.
        compiled: Also measure ``torch.compile`` (backend ``torch-compile``) at the first CPU
            batch size and on the GPU; ``first_call_seconds`` then holds the compile time.
    """
    cpu = torch.device("cpu")
    rows = [
        Measurement(
            name, "openmm", "cpu", "float64", 1, 1, *time_openmm(system, positions, seconds)
        )
    ]
    if torch.cuda.is_available() and "CUDA" in openmm_platforms():
        rate = time_openmm(system, positions, seconds, platform="CUDA")
        rows.append(Measurement(name, "openmm", "cuda", "mixed", 1, 1, *rate))
    for count in workers:
        rate = _time_bridge(system, temperature, positions, count, seconds)
        rows.append(Measurement(name, "openmm-bridge", "cpu", "float64", 256, count, *rate))
    runs = [(backend, cpu, batch) for batch in batches for backend in ("torch", "torch-autograd")]
    if compiled:
        runs.append(("torch-compile", cpu, batches[0]))
    if torch.cuda.is_available():
        runs += [("torch", torch.device("cuda"), batch) for batch in gpu_batches]
        runs += [
            ("torch-compile", torch.device("cuda"), batch) for batch in gpu_batches if compiled
        ]
    for backend, device, batch in runs:
        for dtype in (torch.float32, torch.float64):
            forcefield = compile_system(system, temperature)
            forcefield.use_analytic_gradients(backend == "torch")
            if backend == "torch-compile":
                forcefield.enable_compile()
            rate, first = time_torch(forcefield, positions, batch, dtype, device, seconds)
            rows.append(
                Measurement(
                    name,
                    backend,
                    device.type,
                    str(dtype).removeprefix("torch."),
                    batch,
                    1,
                    rate,
                    first,
                )
            )
    return rows


def format_table(
    rows: list[Measurement],
    reference_backend: str = "openmm",
    rate_label: str = "evals/s",
    batch_label: str = "batch",
) -> str:
    """A plain-text table; ``x OpenMM`` is the speed-up over the CPU row of ``reference_backend``
    (OpenMM's CPU platform) of the same molecule."""
    reference = {
        row.molecule: row.evaluations_per_second
        for row in rows
        if row.backend == reference_backend and row.device == "cpu"
    }
    width = max(14, *(len(row.backend) for row in rows)) if rows else 14
    lines = [
        f"{'molecule':<26} {'backend':<{width}} {'device':<6} {'dtype':<8} {batch_label:>8} "
        f"{'workers':>7} "
        f"{rate_label:>15} {'x OpenMM':>9} {'1st call s':>10}"
    ]
    for row in rows:
        speedup = (
            row.evaluations_per_second / reference[row.molecule]
            if row.molecule in reference
            else float("nan")
        )
        lines.append(
            f"{row.molecule:<26} {row.backend:<{width}} {row.device:<6} {row.dtype:<8} "
            f"{row.batch:>8} {row.workers:>7} "
            f"{row.evaluations_per_second:>15,.0f} {speedup:>9.1f} {row.first_call_seconds:>10.2f}"
        )
    return "\n".join(lines)
