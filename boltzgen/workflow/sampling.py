"""Samples of a trained model: drawn in chunks with their weights, and written to disk."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..energy.base import Energy
from ..io import save_samples
from ..samplers.importance import draw_weighted_samples

__all__ = ["draw_samples", "write_samples", "CPU_CHUNK", "CUDA_CHUNK"]

#: Samples per model/energy call on the CPU: alanine dipeptide at 1e5 samples peaked at 500 MB
#: (18 s) with 8192 and at 1.19 GB (28 s) with 65536 (one thread; docs/performance.md).
CPU_CHUNK = 8192
#: Samples per call on a GPU, where larger calls amortise kernel launches.
CUDA_CHUNK = 65536


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
