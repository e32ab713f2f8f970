"""Run directories: train a config into one, reload a finished or interrupted one, sample from it.

A run directory holds::

    config.toml            the resolved config (every default filled in)
    checkpoints/last.pt    model, optimiser, objective state, RNG, counters (atomic, safe to load)
    metrics.csv            step, stage, loss, diagnostics, energy_evaluations, wall_time_s, lr
    summary.json           final metrics (ESS, energy evaluations, wall time, device, ...)
    samples/               samples drawn at the end (:func:`.sampling.write_samples`)

The default run directory of ``boltzgen train CONFIG.toml`` is ``runs/<CONFIG stem>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..diagnostics.discrete import exact_discrete_metrics, free_energy_metrics
from ..energy.base import Energy
from ..energy.exact import MAX_ENUMERATION_UNITS
from ..errors import BoltzgenError
from ..io import RunDir, load_checkpoint, write_json
from ..models.base import Model
from ..samplers.weights import reverse_ess
from ..tensors import device_description
from .config import parse_config_text
from .registry import (
    build_model,
    build_target,
    build_training,
    resolve_config,
    select_device,
)
from .sampling import draw_samples, write_samples

__all__ = [
    "default_run_dir",
    "train_run",
    "load_run",
]


#: The settings file of a training run directory: the resolved config.
CONFIG_FILE = "config.toml"


def default_run_dir(config_path: str | Path) -> Path:
    """``runs/<config file stem>`` in the current directory."""
    return Path("runs") / Path(config_path).stem


def train_run(
    config: Mapping[str, Any], run_dir: str | Path, progress: bool = True
) -> dict[str, Any]:
    """Train a config into ``run_dir`` (resuming a checkpoint there), sample, and write the
    summary.

    Returns:
        The summary dict also written to ``summary.json``.
    """
    resolved = resolve_config(config)
    run_dir = Path(run_dir)
    device = select_device(resolved["device"])
    target = build_target(resolved)  # bad values fail here, before the run directory exists
    model = build_model(resolved, target)
    training = build_training(resolved, target, model, run_dir, progress)
    RunDir(run_dir, CONFIG_FILE, canonical=resolve_config).claim(resolved)
    last = training.fit()
    temperature = training.temperature
    drawn = draw_samples(model, target, resolved["sample"]["n"], temperature)
    paths = write_samples(run_dir / "samples" / "samples", target, drawn, temperature)
    summary = {
        "ess": float(reverse_ess(drawn["log_weights"])),
        "kl_minus_log_z": float((drawn["log_q"] + drawn["reduced_energies"]).mean()),
        "n_samples": int(drawn["samples"].shape[0]),
        "sample_temperature": temperature if temperature is not None else target.temperature,
        "energy_evaluations": training.energy_evaluations,
        "training_loss": last.get("loss"),
        "skipped_steps": int(training.skipped),
        "steps": training.step,
        "wall_time_s": training.wall_time_s,
        "device": device_description(device),
        "samples": [str(p) for p in paths],
    }
    log_z = target.log_z
    if log_z is not None and temperature in (None, target.temperature):
        summary["kl"] = summary["kl_minus_log_z"] + float(log_z)
    if (
        target.is_discrete
        and isinstance(model, Model)
        and model.discrete
        and temperature in (None, target.temperature)
    ):  # log q of the drawn samples is normalized (an RBM's exact log Z_theta subtracted)
        summary.update(free_energy_metrics(target, drawn["log_q"], drawn["reduced_energies"]))
    if (
        target.is_discrete
        and isinstance(model, Model)
        and model.discrete
        and hasattr(model, "exact")
        and target.dim <= MAX_ENUMERATION_UNITS
    ):
        summary.update(exact_discrete_metrics(target, model))
    molecule = target.molecule
    if molecule is not None:
        summary.update(
            ramachandran_outputs(
                run_dir / "samples", drawn["samples"], molecule, summary["sample_temperature"]
            )
        )
    write_json(run_dir / "summary.json", summary)
    return summary


def ramachandran_outputs(
    folder: Path, positions: torch.Tensor, molecule: Any, temperature: float
) -> dict[str, Any]:
    """Write ``ramachandran.png`` (+ ``.npz``) of molecular samples; return the basin populations
    of
    the first (phi, psi) pair (:func:`boltzgen.reference.basin_populations`, unweighted) and the
    path."""
    from ..diagnostics.plots import plot_ramachandran, save_figure
    from ..molecule.ramachandran import backbone_dihedrals, basin_populations

    phi, psi = backbone_dihedrals(positions.double().numpy(), molecule.topology)
    ax, data = plot_ramachandran(
        phi[:, 0], psi[:, 0], title=f"{molecule.name}: flow samples at {temperature:g} K"
    )
    path = folder / "ramachandran.png"
    save_figure(ax.figure, path, data)
    return {
        "basin_populations": basin_populations(phi[:, 0], psi[:, 0]),
        "ramachandran_plot": str(path),
    }


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], Energy, torch.nn.Module]:
    """Rebuild the target and the trained model of a run directory from its config and
    checkpoint."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise BoltzgenError(
            f"{run_dir} is not a run directory (no config.toml); train one with 'boltzgen train "
            "CONFIG'"
        )
    resolved = resolve_config(parse_config_text(config_path.read_text(), str(config_path)))
    target = build_target(resolved)
    model = build_model(resolved, target)
    state = load_checkpoint(
        run_dir / "checkpoints" / "last.pt", map_location=select_device(resolved["device"])
    )
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as error:
        raise BoltzgenError(
            f"the checkpoint of {run_dir} does not match its config: "
            f"{str(error).splitlines()[0][:160]}"
        ) from None
    model.eval()
    return resolved, target, model
