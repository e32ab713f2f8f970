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

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..diagnostics.discrete import (
    beta_schedule_metrics,
    exact_discrete_metrics,
    free_energy_metrics,
)
from ..energy.base import Energy
from ..energy.exact import MAX_ENUMERATION_UNITS, ExactDistribution
from ..errors import BoltzgenError, first_line
from ..io import RunDir, load_checkpoint, remove_stale_temporaries, write_json
from ..models.base import Model
from ..parallel import broadcast_object, init_from_environment, world
from ..samplers.weights import log_z_estimate, reverse_ess, self_normalized_weights
from ..tensors import device_description
from ..trainers.loop import TrainingInterrupted
from .config import parse_config_text
from .registry import (
    build_model,
    build_target,
    build_training,
    resolve_config,
    select_device,
)
from .sampling import draw_samples, teacher_summary, write_samples

__all__ = [
    "warm_start",
    "default_run_dir",
    "train_run",
    "load_run",
    "exact_distribution_of_run",
]


#: The settings file of a training run directory: the resolved config.
CONFIG_FILE = "config.toml"
#: What a training run writes into its folder (removed again when a new run fails early).
_RUN_FILES = (CONFIG_FILE, "checkpoints", "metrics.csv", "summary.json", "samples", "ladder.json")


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
    resolved = resolve_config(config)  # every key, type and range: nothing is written before
    run_dir = Path(run_dir)
    ranks, device = init_from_environment(select_device(resolved["device"]))
    target = build_target(resolved)  # bad values fail here, before the run directory exists
    effective = molecule_settings(target)
    resolved = with_molecule_settings(resolved, effective)
    model = build_model(resolved, target)
    if resolved["init_from"]:
        warm_start(model, resolved["init_from"])
    training = build_training(resolved, target, model, run_dir, progress)
    folder = RunDir(
        run_dir,
        CONFIG_FILE,
        canonical=lambda recorded: with_molecule_settings(resolve_config(recorded), effective),
    )
    if not ranks.is_main:
        return _train_on_other_rank(resolved, target, model, training, run_dir, device)
    existed = run_dir.exists()
    with folder.lock():
        try:
            resumed = folder.claim(resolved)
        except BoltzgenError as error:
            tell_other_ranks(error)
            raise
        tell_other_ranks(None)
        try:
            return _train_and_sample(resolved, target, model, training, run_dir, device)
        except TrainingInterrupted:
            raise  # resumable: the checkpoint stays
        except BaseException:
            if not resumed:
                _discard_unusable_run(run_dir, existed)
            raise


def tell_other_ranks(error: BoltzgenError | None) -> None:
    """Rank 0 of a torchrun launch: tell the other ranks whether the run folder was claimed
    (they wait for it; nothing happens on one process)."""
    if world().distributed:
        broadcast_object(None if error is None else str(error))


def _train_on_other_rank(
    resolved: dict[str, Any],
    target: Energy,
    model: torch.nn.Module,
    training: Any,
    run_dir: Path,
    device: torch.device,
) -> dict[str, Any]:
    """Ranks other than 0: wait for rank 0 to claim the folder, train with it (the trainer
    writes nothing here), and take rank 0's summary once it has sampled and written it."""
    refused = broadcast_object(None)
    if refused is not None:
        raise BoltzgenError(refused)
    training.fit()
    return broadcast_object(None)


#: Molecule sources: a catalog name, a PDB path or a sequence; unset when ``None`` or empty.
_MOLECULE_SOURCES = ("system", "pdb", "sequence")


def molecule_settings(target: Energy) -> dict[str, Any]:
    """What a molecular target's options resolved to (force field files, solvent, constraints,
    temperature in K: the catalog's or the PDB defaults where the config left them out);
    empty for other targets."""
    molecule = target.molecule
    if molecule is None:
        return {}
    return {
        "forcefield": list(molecule.forcefield_files),
        "solvent": molecule.solvent,
        "constraints": molecule.constraints,
        "temperature": float(molecule.temperature),
    }


def with_molecule_settings(resolved: dict[str, Any], effective: Mapping[str, Any]) -> dict:
    """``resolved`` with the ``[target]`` molecule options that were left unset filled in from
    ``effective`` (:func:`molecule_settings`), and empty source keys dropped, so that the run's
    ``config.toml`` states the force field, solvent and temperature that ran. A config written
    before (options unset, ``pdb = ""``) compares equal to its filled-in form."""
    if resolved["target"]["name"] != "molecule":
        return resolved
    table = {
        key: value
        for key, value in resolved["target"].items()
        if not (key in _MOLECULE_SOURCES and not value)
    }
    for key, value in effective.items():
        if table.get(key) is None:
            table[key] = value
    return {**resolved, "target": table}


def _discard_unusable_run(run_dir: Path, existed: bool) -> None:
    """After a new run failed: remove what it wrote, unless it wrote a checkpoint (which a
    rerun of the same config resumes from). A folder that existed before keeps everything
    else that was in it."""
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.glob("*.pt")):
        return
    if not existed:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for name in _RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _train_and_sample(
    resolved: dict[str, Any],
    target: Energy,
    model: torch.nn.Module,
    training: Any,
    run_dir: Path,
    device: torch.device,
) -> dict[str, Any]:
    remove_stale_temporaries(run_dir / "samples")  # the trainer cleans its own folders
    last = training.fit()
    temperature = training.temperature
    drawn = draw_samples(model, target, resolved["sample"]["n"], temperature)
    paths = write_samples(run_dir / "samples" / "samples", target, drawn, temperature)
    summary = {
        "ess": float(reverse_ess(drawn["log_weights"])),
        **{k: float(v) for k, v in log_z_estimate(drawn["log_weights"]).items()},
        "n_samples": int(drawn["samples"].shape[0]),
        "sample_temperature": temperature if temperature is not None else target.temperature,
        "energy_evaluations": training.energy_evaluations,
        "training_loss": last.get("loss"),
        "skipped_steps": int(training.skipped),
        "steps": training.step,
        "wall_time_s": training.wall_time_s,
        "device": device_description(device),
        "processes": world().size,
        "samples": [str(p) for p in paths],
    }
    log_z = target.log_z
    if log_z is not None and temperature in (None, target.temperature):
        summary["kl"] = float((drawn["log_q"] + drawn["reduced_energies"]).mean()) + float(log_z)
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
    federation_metrics = getattr(training, "summary_metrics", None)
    if federation_metrics is not None:
        summary.update(federation_metrics())
    teacher = getattr(getattr(training, "objective", None), "teacher", None)
    if teacher is not None:
        summary.update(teacher_summary(teacher, drawn["samples"], drawn["log_q"]))
    schedule = getattr(getattr(training, "objective", None), "schedule_results", None)
    if schedule is not None and schedule():
        summary["beta_schedule"] = beta_schedule_metrics(target, schedule())
    molecule = target.molecule
    if molecule is not None:
        summary.update(
            ramachandran_outputs(
                run_dir / "samples",
                drawn["samples"],
                molecule,
                summary["sample_temperature"],
                drawn["log_weights"],
            )
        )
    write_json(run_dir / "summary.json", summary)
    return broadcast_object(summary)  # the other ranks of a torchrun launch wait for it


def ramachandran_outputs(
    folder: Path,
    positions: torch.Tensor,
    molecule: Any,
    temperature: float,
    log_weights: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Write ``ramachandran.png`` (+ ``.npz``) of molecular samples; return the path and the
    basin populations of the first (phi, psi) pair
    (:func:`boltzgen.molecule.ramachandran.basin_populations`): of the samples, and with
    ``log_weights`` ``(n,)`` also reweighted to the target (clipped self-normalised weights)
    with their standard errors; and those of the molecule's MD reference at its temperature
    (:attr:`~boltzgen.molecule.Molecule.md_reference`) when it has one and the samples are at
    that temperature."""
    from ..diagnostics.plots import plot_ramachandran, save_figure
    from ..molecule.ramachandran import (
        backbone_dihedrals,
        basin_populations,
        basin_standard_errors,
    )

    phi, psi = backbone_dihedrals(positions, molecule.topology)  # mdtraj works in float32
    ax, data = plot_ramachandran(
        phi[:, 0], psi[:, 0], title=f"{molecule.name}: flow samples at {temperature:g} K"
    )
    path = folder / "ramachandran.png"
    save_figure(ax.figure, path, data)
    outputs = {
        "basin_populations": basin_populations(phi[:, 0], psi[:, 0]),
        "ramachandran_plot": str(path),
    }
    if log_weights is not None:
        weights = self_normalized_weights(log_weights)
        outputs["reweighted_basin_populations"] = basin_populations(phi[:, 0], psi[:, 0], weights)
        outputs["reweighted_basin_se"] = basin_standard_errors(phi[:, 0], psi[:, 0], weights)
    reference = getattr(molecule, "md_reference", None)
    if reference is not None and temperature == molecule.temperature:
        outputs["md_reference_basin_populations"] = reference.populations
        outputs["md_reference_basin_se"] = reference.standard_errors()
    return outputs


def exact_distribution_of_run(run_dir: str | Path) -> ExactDistribution | None:
    """The exact distribution of a run's target when it is discrete with at most
    ``MAX_ENUMERATION_UNITS`` units (for the report's exact curves); ``None`` otherwise, also
    when the run's config cannot be built (a foreign or damaged folder: the report then
    draws no exact curve, and its other figures do not depend on the config)."""
    config_path = Path(run_dir) / CONFIG_FILE
    if not config_path.is_file():
        return None
    try:
        resolved = resolve_config(parse_config_text(config_path.read_text(), str(config_path)))
        if resolved["target"]["name"] == "molecule":
            return None
        target = build_target(resolved)
    except BoltzgenError:
        return None
    if not target.is_discrete or target.dim > MAX_ENUMERATION_UNITS:
        return None
    return target.exact()


def warm_start(model: torch.nn.Module, run_dir: str | Path) -> None:
    """Load the trained model of ``run_dir`` (its ``checkpoints/last.pt``) into ``model``, the
    start of a run with ``init_from = RUN_DIR`` (a run's own checkpoint, when it resumes,
    replaces it).

    Raises:
        BoltzgenError: ``run_dir`` holds no readable checkpoint, or one of another model.
    """
    path = Path(run_dir) / "checkpoints" / "last.pt"
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else "cpu"
    state = load_checkpoint(path, map_location=device, kind="model")
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as error:
        raise BoltzgenError(
            f"init_from = {str(run_dir)!r}: its model does not fit this config's [model] "
            f"({first_line(error)}); use a run of the same model"
        ) from None


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
        run_dir / "checkpoints" / "last.pt",
        map_location=select_device(resolved["device"]),
        kind="model",
    )
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as error:
        raise BoltzgenError(
            f"the checkpoint of {run_dir} does not match its config: {first_line(error)}"
        ) from None
    model.eval()
    return resolved, target, model
