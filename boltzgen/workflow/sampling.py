"""Samples of a trained model: drawn in chunks with their weights, written to disk, and judged
by a distillation teacher."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..energy.base import Energy
from ..io import save_samples
from ..samplers.importance import draw_weighted_samples
from ..samplers.weights import reverse_ess

__all__ = ["draw_samples", "write_samples", "teacher_summary", "CPU_CHUNK", "CUDA_CHUNK"]

#: Samples per model/energy call on the CPU: alanine dipeptide at 1e5 samples peaked at 500 MB
#: (18 s) with 8192 and at 1.19 GB (28 s) with 65536 (one thread; docs/performance.md).
CPU_CHUNK = 8192
#: Samples per call on a GPU, where larger calls amortise kernel launches.
CUDA_CHUNK = 65536
#: The teacher's own log-density quantile below which a student sample counts as landing where
#: the teacher has (almost) no mass (MiniLLM's claim: reverse KD avoids such samples).
LOW_DENSITY_QUANTILE = 0.01


@torch.no_grad()
def draw_samples(
    model: torch.nn.Module,
    target: Energy,
    n: int,
    temperature: float | None = None,
    chunk: int | None = None,
) -> dict[str, torch.Tensor]:
    """Draw ``n`` model samples in chunks with log q, reduced energies and log-weights.

    An unnormalized model (an RBM) gets log q = log q~ - log Z_theta with its exact log Z_theta;
    its samples are exact when its visible layer can be enumerated (:meth:`RBM.sample`).
    ``chunk`` samples per call (default :data:`CPU_CHUNK` or :data:`CUDA_CHUNK` by the model's
    device); the results are gathered on the CPU.

    Returns:
        Dict with ``samples`` (n, *event_shape), ``log_q`` (n,), ``reduced_energies`` (n,) at
        ``temperature`` (target units; ``None``: the target's own) and ``log_weights`` = -u - log
        q.
    """
    if chunk is None:
        parameter = next(model.parameters(), None)
        on_cuda = parameter is not None and parameter.device.type == "cuda"
        chunk = CUDA_CHUNK if on_cuda else CPU_CHUNK
    drawn = draw_weighted_samples(model, target, n, temperature, chunk_size=chunk, storage="cpu")
    return {
        "samples": drawn.samples,
        "log_q": drawn.log_q,
        "reduced_energies": drawn.reduced_energies,
        "log_weights": drawn.log_weights,
    }


def write_samples(
    path_prefix: Path, target: Energy, drawn: Mapping[str, torch.Tensor], temperature: float | None
) -> list[Path]:
    """Write drawn samples: a trajectory with topology for molecules, ``{prefix}.pt`` otherwise."""
    molecule = target.molecule
    if molecule is not None:
        from ..molecule.trajectories import write_trajectory

        paths = write_trajectory(
            str(path_prefix),
            drawn["samples"],
            molecule.topology,
            log_weights=drawn["log_weights"].double().numpy(),
            reduced_energies=drawn["reduced_energies"].double().numpy(),
            temperature=temperature if temperature is not None else target.temperature,
        )
        return [Path(p) for p in paths]
    path = path_prefix.with_suffix(".pt")
    save_samples(
        path,
        drawn["samples"],
        log_q=drawn["log_q"],
        reduced_energies=drawn["reduced_energies"],
        log_weights=drawn["log_weights"],
    )
    return [path]


@torch.no_grad()
def teacher_summary(
    teacher: torch.nn.Module, samples: torch.Tensor, log_q: torch.Tensor, chunk: int = CPU_CHUNK
) -> dict[str, float]:
    """The student's final samples judged by the teacher, for ``summary.json``.

    Arguments:
        teacher: The normalized teacher (``log_prob``, ``sample_and_log_prob``).
        samples: Student samples ``(n, *event_shape)`` (any device).
        log_q: The student's log q of them ``(n,)``.
        chunk: Samples per teacher call.

    Returns:
        ``ess_teacher``: reverse ESS fraction of the weights p/q (clipped like ``ess``);
        ``teacher_low_density_fraction``: the fraction of student samples whose teacher
        log-density is below the teacher's own :data:`LOW_DENSITY_QUANTILE` quantile, which is
        estimated from n fresh teacher samples and reported as ``teacher_log_density_q01``.
    """
    parameter = next(teacher.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    log_p = torch.cat([teacher.log_prob(part.to(device)).cpu() for part in samples.split(chunk)])
    n = samples.shape[0]
    own = torch.cat(
        [teacher.sample_and_log_prob(min(chunk, n - i))[1].cpu() for i in range(0, n, chunk)]
    )
    threshold = torch.quantile(own.double(), LOW_DENSITY_QUANTILE)
    log_w = log_p.double() - log_q.double().cpu()
    return {
        "ess_teacher": float(reverse_ess(log_w)),
        "teacher_low_density_fraction": float((log_p.double() < threshold).double().mean()),
        "teacher_log_density_q01": float(threshold),
    }
