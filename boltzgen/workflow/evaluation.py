"""Sample-quality metrics of a trained run directory (``boltzgen evaluate`` prints them).

:func:`evaluate_run` draws N samples from the trained model and reports, with the metric
functions of :mod:`boltzgen.diagnostics.metrics` and :mod:`boltzgen.samplers.weights`:

- ``ess``: reverse ESS fraction of the importance weights at the run's temperature (clipped);
- ``kl``: the exact KL(q||p) = E_q[log q + u] + log Z (nats, Monte Carlo over the samples) when
  the target knows log Z and the temperature is its own;
- with a ``reference`` (target samples: MD frames for molecules, exact samples for toys):
  ``nll`` (nats, frames outside the model's support counted in ``n_outside_support``),
  ``forward_ess`` and, for molecules, the Ramachandran KL/TV per (phi_i, psi_i) pair, plain and
  importance-reweighted, with the reference's split-half noise floor ``ramachandran_tv_floor``;
- the training cost from the run's checkpoint: ``energy_evaluations``, ``wall_time_s``.

Metrics that need what is missing (a reference, a molecule) are ``null``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..diagnostics.metrics import nll, ramachandran_metrics
from ..energy.base import Energy
from ..errors import BoltzgenError, first_line
from ..io import load_checkpoint, load_samples
from ..molecule.ramachandran import backbone_dihedrals
from ..samplers.weights import forward_ess, log_importance_weights, reverse_ess
from ..tensors import device_description
from .registry import training_temperature
from .runs import load_run
from .sampling import draw_samples

__all__ = ["REPORT_KEYS", "evaluate_run"]

#: Keys of the report, in print order.
REPORT_KEYS = (
    "ess",
    "kl",
    "forward_ess",
    "nll",
    "nll_standard_error",
    "n_outside_support",
    "ramachandran_kl",
    "ramachandran_tv",
    "ramachandran_kl_reweighted",
    "ramachandran_tv_reweighted",
    "ramachandran_kl_floor",
    "ramachandran_tv_floor",
    "n_samples",
    "n_reference",
    "temperature",
    "energy_evaluations",
    "wall_time_s",
    "evaluation_wall_time_s",
    "device",
)


def _load_reference(path: Path, target: Energy, run_dir: Path) -> Tensor:
    """Reference states ``(n, *event_shape)``: an mdtraj-readable trajectory or ``.npz``
    ``positions`` (nm) for molecules, a sample file (.pt/.npy/.npz ``samples``) otherwise."""
    molecule = target.molecule
    if molecule is None:
        states = load_samples(path)
    elif path.suffix == ".npz":
        states = load_samples(path, key="positions")
    else:
        import mdtraj

        if not path.is_file():
            raise BoltzgenError(f"reference {path} does not exist")
        topology = run_dir / "samples" / "samples.pdb"
        top = (
            str(topology) if topology.is_file() else mdtraj.Topology.from_openmm(molecule.topology)
        )
        try:
            frames = (
                mdtraj.load(str(path))
                if path.suffix in (".pdb", ".h5")
                else mdtraj.load(str(path), top=top)
            )
        except Exception as error:  # mdtraj raises many types for unreadable files
            raise BoltzgenError(
                f"cannot read reference trajectory {path}: {first_line(error)}"
            ) from None
        states = torch.from_numpy(frames.xyz)
    if states.dim() < 2 or tuple(states.shape[1:]) != tuple(target.event_shape):
        raise BoltzgenError(
            f"reference {path} holds states of shape {tuple(states.shape[1:])}, but the run's "
            "target expects "
            f"{tuple(target.event_shape)}"
        )
    return states


@torch.no_grad()
def _log_q_and_energy(
    model: torch.nn.Module,
    target: Energy,
    states: Tensor,
    temperature: float | None,
    chunk: int = 65536,
) -> tuple[Tensor, Tensor]:
    """log q and reduced energies of reference states, evaluated in chunks on the model's
    device."""
    parameter = next(model.parameters())
    log_q, energies = [], []
    for start in range(0, states.shape[0], chunk):
        x = states[start : start + chunk].to(parameter.device, parameter.dtype)
        log_q.append(model.log_prob(x).cpu())
        energies.append(target.energy(x, temperature).cpu())
    return torch.cat(log_q), torch.cat(energies)


def evaluate_run(
    run_dir: str | Path,
    n: int,
    reference: str | Path | None = None,
    temperature: float | None = None,
    clip_fraction: float = 1e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of a trained run directory (see the module docstring); every key of
    ``REPORT_KEYS``."""
    if n < 2:
        raise BoltzgenError("-n must be at least 2")
    started = time.perf_counter()
    run_dir = Path(run_dir)
    resolved, target, model = load_run(run_dir)
    if temperature is None:
        temperature = training_temperature(resolved)
    torch.manual_seed(seed)
    drawn = draw_samples(model, target, n, temperature)
    log_w = drawn["log_weights"]
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt", kind="model")
    report: dict[str, Any] = dict.fromkeys(REPORT_KEYS)
    report.update(
        ess=float(reverse_ess(log_w, clip_fraction)),
        n_samples=n,
        temperature=temperature if temperature is not None else target.temperature,
        energy_evaluations=state.get("energy_evaluations"),
        wall_time_s=state.get("wall_time_s"),
        device=device_description(next(model.parameters()).device),
    )
    if target.log_z is not None and report["temperature"] == target.temperature:
        # KL(q||p) = E_q[log q + u] + log Z, exact up to Monte Carlo error when log Z is known
        report["kl"] = float((drawn["log_q"] + drawn["reduced_energies"]).double().mean())
        report["kl"] += target.log_z
    if reference is not None:
        states = _load_reference(Path(reference), target, run_dir)
        log_q, energies = _log_q_and_energy(model, target, states, temperature)
        likelihood = nll(log_q)
        report.update(
            n_reference=int(states.shape[0]),
            nll=likelihood["nll"] if math.isfinite(likelihood["nll"]) else None,
            nll_standard_error=likelihood["nll_standard_error"]
            if math.isfinite(likelihood["nll_standard_error"])
            else None,
            n_outside_support=likelihood["n_outside_support"],
            forward_ess=float(forward_ess(log_importance_weights(energies, log_q))),
        )
        molecule = target.molecule
        if molecule is not None:
            angles = ramachandran_metrics(
                backbone_dihedrals(states.double().numpy(), molecule.topology),
                backbone_dihedrals(drawn["samples"], molecule.topology),
                flow_log_weights=log_w,
                clip_fraction=clip_fraction,
            )
            report.update(
                {
                    f"ramachandran_{key}": angles[key]
                    for key in ("kl", "tv", "kl_reweighted", "tv_reweighted")
                }
            )
            report.update(
                ramachandran_kl_floor=angles["split_half"]["kl"],
                ramachandran_tv_floor=angles["split_half"]["tv"],
            )
    report["evaluation_wall_time_s"] = time.perf_counter() - started
    report["not_computed"] = _why_missing(report, target, reference)
    return report


_REFERENCE_KEYS = ("forward_ess", "nll", "nll_standard_error", "n_outside_support", "n_reference")


def _why_missing(report: dict[str, Any], target: Energy, reference: Any) -> dict[str, str]:
    """Why each ``null`` metric of ``report`` was not computed: reason -> the keys, joined."""
    reasons: dict[str, list[str]] = {}
    if report["kl"] is None:
        reason = (
            "the target does not know log Z"
            if target.log_z is None
            else f"log Z is known at T = {target.temperature:g} only (evaluate with "
            f"--temperature {target.temperature:g})"
        )
        reasons.setdefault(reason, []).append("kl")
    angles = [key for key in REPORT_KEYS if key.startswith("ramachandran_")]
    if reference is None:
        reasons["needs --reference samples"] = list(_REFERENCE_KEYS)
    if target.molecule is None:
        reasons["not a molecule"] = angles
    elif reference is None:
        reasons["needs --reference samples"] += angles
    return {reason: ", ".join(keys) for reason, keys in reasons.items()}
