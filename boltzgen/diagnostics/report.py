"""Figures and a self-contained HTML report of a run directory.

Reads a run directory (layout in ``docs/diagnostics.md``): ``config.toml``, ``metrics.csv``,
``summary.json`` and, for molecules, ``samples/samples.{pdb,h5,dcd}`` with
``samples.weights.npz``; optionally a reference MD dataset. Missing pieces (no samples for a toy
target, no reference) are recorded as notes; only a missing run directory is an error.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mdtraj
import numpy as np
import torch
from matplotlib.figure import Figure

from ..energy.exact import ExactDistribution
from ..errors import BoltzgenError
from ..io import MetricsLog, load_samples, read_arrays, read_metrics_columns
from ..molecule.ramachandran import backbone_dihedrals, basin_populations
from ..molecule.trajectories import read_trajectory
from ..samplers.weights import reverse_ess, self_normalized_weights
from .metrics import angle_pairs, ramachandran_metrics
from .plots import (
    FigureData,
    plot_discrete_observables,
    plot_energy_histogram,
    plot_free_energy_profile,
    plot_log_weights,
    plot_ramachandran_comparison,
    plot_training_curves,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "RunData",
    "Reference",
    "load_run_data",
    "load_reference",
    "run_figure",
    "write_report",
    "FIGURE_KINDS",
    "MOLECULAR_KINDS",
    "DISCRETE_KINDS",
    "temperature_text",
    "figure_caption",
]

#: Figures of a run, in report order: kind -> what it shows and which runs have it (the
#: report's captions are written from what each figure actually draws).
FIGURE_KINDS: dict[str, str] = {
    "ramachandran": "Ramachandran free-energy surfaces (molecular runs)",
    "fes1d": "free-energy profiles of phi and psi (molecular runs)",
    "energy": "distribution of the target energy of the samples (every run)",
    "weights": "cumulative importance weight of the samples (every run)",
    "discrete": "mean unit and energy per unit of discrete samples, vs exact (discrete runs)",
    "training": "training curves (every run)",
}
#: Upper end of the free-energy profiles' axis (kT): beyond it a profile is noise.
PROFILE_TOP_KT = 15.0
#: Figure kinds that need molecular samples (backbone dihedrals), and discrete samples.
MOLECULAR_KINDS = ("ramachandran", "fes1d")
DISCRETE_KINDS = ("discrete",)


@dataclass
class RunData:
    """What a run directory holds; absent pieces are ``None`` with a note saying why.

    Attributes:
        run_dir: The run directory.
        config: Parsed ``config.toml`` (empty when missing).
        metrics: Columns of ``metrics.csv`` (``stage`` as strings, the rest float, empty -> NaN).
        summary: Parsed ``summary.json``.
        samples: Flow samples as an mdtraj trajectory (positions in nm).
        log_weights: Log importance weights of the samples, ``(n,)``.
        reduced_energies: Reduced energies u of the samples in kT, ``(n,)``.
        temperature: Temperature of the reduced energies and weights: K for molecules, target
            units for other targets.
        molecular: Whether the samples are molecular (a trajectory with backbone dihedrals).
        states: Discrete samples ``(n, N)`` (units in {-1, +1} or {0, 1}), else ``None``.
        exact: The exact distribution of an enumerable discrete target (set by the caller,
            which can build the target), else ``None``.
        notes: Human-readable notes on missing or unreadable pieces.
    """

    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, np.ndarray] | None = None
    summary: dict[str, Any] | None = None
    samples: mdtraj.Trajectory | None = None
    log_weights: np.ndarray | None = None
    reduced_energies: np.ndarray | None = None
    temperature: float | None = None
    molecular: bool = False
    states: np.ndarray | None = None
    exact: ExactDistribution | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Reference:
    """A reference MD dataset: backbone dihedrals and, when stored, reduced energies.

    Attributes:
        path: Where it was read from.
        angles: ``(phi, psi)`` in radians, each ``(n, k)``.
        reduced_energies: Reduced energies u in kT, ``(n,)``, or ``None``.
    """

    path: Path
    angles: tuple[np.ndarray, np.ndarray]
    reduced_energies: np.ndarray | None = None


def load_run_data(run_dir: str | Path) -> RunData:
    """Read every piece of a run directory that exists.

    Arguments:
        run_dir: The run directory.

    Returns:
        The :class:`RunData`; missing or unreadable pieces become notes.

    Raises:
        BoltzgenError: When ``run_dir`` is not a directory.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BoltzgenError(
            f"run directory '{run_dir}' does not exist: pass the folder written by 'boltzgen "
            "train'"
        )
    run = RunData(run_dir)
    config_path = run_dir / "config.toml"
    if config_path.is_file():
        try:
            run.config = tomllib.loads(config_path.read_text())
        except tomllib.TOMLDecodeError as error:
            run.notes.append(f"config.toml is not valid TOML ({error}); settings not shown.")
    else:
        run.notes.append("No config.toml: settings not shown.")
    rows = MetricsLog(run_dir / "metrics.csv").read()
    if rows:
        run.metrics = {
            column: np.array([row.get(column, "") or "" for row in rows], dtype=str)
            if column == "stage"
            else read_metrics_columns(rows, column)
            for column in rows[0]
        }
    else:
        run.notes.append("No metrics.csv (or it has no rows): training curves skipped.")
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        try:
            run.summary = json.loads(summary_path.read_text())
        except json.JSONDecodeError as error:
            run.notes.append(f"summary.json is not valid JSON ({error}).")
    else:
        run.notes.append("No summary.json: final metrics not shown.")
    _load_samples(run)
    return run


def _load_samples(run: RunData) -> None:
    """Fill the samples and their weights into ``run``, or add a note."""
    prefix = run.run_dir / "samples" / "samples"
    if not (prefix.parent / "samples.pdb").is_file():
        _load_plain_samples(run, prefix.with_suffix(".pt"))
        return
    try:
        run.samples, sidecar = read_trajectory(prefix)
    except (BoltzgenError, ImportError, OSError, ValueError) as error:
        run.notes.append(
            f"Samples could not be read ({str(error).splitlines()[0][:160]}): sample figures "
            "skipped."
        )
        return
    run.molecular = True
    run.log_weights = sidecar.get("log_weights")
    run.reduced_energies = sidecar.get("reduced_energies")
    run.temperature = float(sidecar["temperature"]) if "temperature" in sidecar else None
    if run.log_weights is None:
        run.notes.append(
            "No log_weights in samples/samples.weights.npz: reweighted curves and weight figures "
            "skipped."
        )


def _load_plain_samples(run: RunData, path: Path) -> None:
    """Log-weights and reduced energies of a non-molecular run's ``samples.pt``, or a note."""
    if not path.is_file():
        run.notes.append("No samples (samples/samples.pt or samples.pdb): sample figures skipped.")
        return
    try:
        run.log_weights = load_samples(path, "log_weights").double().numpy()
        run.reduced_energies = load_samples(path, "reduced_energies").double().numpy()
        samples = load_samples(path).double().numpy()
    except BoltzgenError as error:
        run.notes.append(f"Samples could not be read ({error}): sample figures skipped.")
        return
    units = np.unique(samples[: min(len(samples), 1000)])
    if samples.ndim >= 2 and set(units.tolist()) <= {-1.0, 0.0, 1.0}:
        run.states = samples.reshape(samples.shape[0], -1)
    if run.summary is not None:
        run.temperature = run.summary.get("sample_temperature")


def load_reference(path: str | Path, topology: str | Path | None = None) -> Reference:
    """Read a reference MD dataset.

    Arguments:
        path: A ``.npz`` with ``phi`` and ``psi`` arrays (radians, ``(n, k)``; optional
            ``reduced_energies`` in kT, ``(n,)``), or any trajectory ``mdtraj.load`` reads.
        topology: Topology file for trajectory formats without one (e.g. the run's
            ``samples/samples.pdb``).

    Returns:
        The :class:`Reference`.

    Raises:
        BoltzgenError: When the file is missing or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise BoltzgenError(f"reference dataset '{path}' does not exist")
    if path.suffix == ".npz":
        arrays = read_arrays(path, ("phi", "psi"), "reference dataset")
        phi, psi = angle_pairs((arrays["phi"], arrays["psi"]), f"reference '{path}'")
        energies = arrays.get("reduced_energies")
        if energies is not None and energies.shape != (phi.shape[0],):
            raise BoltzgenError(
                f"reference '{path}': reduced_energies has shape {energies.shape}, the "
                f"{phi.shape[0]} frames of phi need ({phi.shape[0]},)"
            )
        if energies is not None and energies.dtype.kind not in "fiu":
            raise BoltzgenError(f"reference '{path}': reduced_energies are {energies.dtype}")
        finite = [np.isfinite(a).all() for a in (phi, psi, energies) if a is not None]
        if not all(finite):
            raise BoltzgenError(
                f"reference '{path}' has non-finite phi, psi or reduced_energies: write it again"
            )
        return Reference(path, (phi, psi), energies)
    needs_topology = path.suffix not in {".pdb", ".h5", ".gz"}
    if needs_topology and (topology is None or not Path(topology).is_file()):
        raise BoltzgenError(
            f"reference '{path}' needs a topology: the run has no samples/samples.pdb to use"
        )
    try:
        trajectory = (
            mdtraj.load(str(path), top=str(topology)) if needs_topology else mdtraj.load(str(path))
        )
    except Exception as error:  # mdtraj raises many types for foreign files
        raise BoltzgenError(
            f"cannot read reference '{path}': {str(error).splitlines()[0][:160]}"
        ) from None
    return Reference(path, backbone_dihedrals(trajectory))


def temperature_text(run: RunData) -> str:
    """The samples' temperature in words: ``"300 K"`` for molecules, ``"T = 4 (target units)"``
    otherwise, ``"the target's temperature"`` when unknown."""
    if run.temperature is None:
        return "the target's temperature"
    if run.molecular:
        return f"{run.temperature:g} K"
    return f"T = {run.temperature:g} (target units)"


def _target_name(run: RunData) -> str:
    target = run.config.get("target", {})
    if not isinstance(target, Mapping):
        return "unknown target"
    return str(target.get("system") or target.get("sequence") or target.get("name", "target"))


def run_figure(
    run: RunData, kind: str, reference: Reference | None = None
) -> tuple[Figure, FigureData]:
    """One figure of a run, titled with the target and the samples' temperature.

    Arguments:
        run: The run's data.
        kind: One of :data:`FIGURE_KINDS`: ``ramachandran`` and ``fes1d`` need molecular
            samples; ``energy`` and ``weights`` need samples of any target (their reduced
            energies and log-weights); ``training`` needs ``metrics.csv``.
        reference: Reference MD data, drawn where the figure has an MD curve or panel.

    Returns:
        ``(figure, data)`` as from the functions of :mod:`boltzgen.diagnostics.plots`.

    Raises:
        BoltzgenError: For an unknown kind or when the run lacks what the figure needs.
    """
    if kind not in FIGURE_KINDS:
        raise BoltzgenError(f"unknown figure kind '{kind}': choose from {', '.join(FIGURE_KINDS)}")
    where = f"{_target_name(run)} at {temperature_text(run)}"
    if kind == "training":
        if run.metrics is None:
            raise BoltzgenError(
                f"'{run.run_dir}' has no metrics.csv rows to plot training curves from"
            )
        return plot_training_curves(run.metrics, title=f"training: {_target_name(run)}")
    if kind in MOLECULAR_KINDS and not run.molecular:
        raise BoltzgenError(
            f"a {kind} figure needs molecular samples (backbone dihedrals) and '{run.run_dir}' "
            f"has none: for this run use --kind {', '.join(_kinds_for(run))}"
        )
    if kind in DISCRETE_KINDS:
        if run.states is None:
            raise BoltzgenError(
                f"a {kind} figure needs discrete samples and '{run.run_dir}' has none: for this "
                f"run use --kind {', '.join(_kinds_for(run))}"
            )
        exact = None
        if run.exact is not None:
            means = torch.cat([s.mean(1).cpu() for s in run.exact.states()])
            log_prob = run.exact.log_prob.double().cpu()
            u = -(log_prob + run.exact.log_z.double().cpu()) / run.exact.n_units
            exact = (means.numpy(), u.numpy(), log_prob.exp().numpy())
        return plot_discrete_observables(
            run.states, run.reduced_energies, run.log_weights, exact, title=f"samples: {where}"
        )
    if kind == "ramachandran":
        return plot_ramachandran_comparison(
            backbone_dihedrals(run.samples),
            reference and reference.angles,
            run.log_weights,
            title=f"Ramachandran free energy: {where}",
        )
    if kind == "fes1d":
        figure, data = _profiles_figure(run, reference)
        figure.suptitle(f"free-energy profiles: {where}", fontsize=12)
        return figure, data
    if kind == "energy":
        if run.reduced_energies is None:
            raise BoltzgenError(
                f"'{run.run_dir}' has no reduced energies of its samples for an energy figure"
            )
        ax, data = plot_energy_histogram(
            run.reduced_energies,
            run.log_weights,
            reference and reference.reduced_energies,
            temperature=run.temperature if run.molecular else None,
            title=f"energy of the samples: {where}",
        )
        return ax.figure, data
    if run.log_weights is None:
        raise BoltzgenError(
            f"'{run.run_dir}' has no log-weights of its samples for a weights figure"
        )
    ax, data = plot_log_weights(run.log_weights, title=f"importance weights: {where}")
    return ax.figure, data


def _kinds_for(run: RunData) -> list[str]:
    """The figure kinds that fit ``run``."""
    return [
        kind
        for kind in FIGURE_KINDS
        if (kind not in MOLECULAR_KINDS or run.molecular)
        and (kind not in DISCRETE_KINDS or run.states is not None)
    ]


def figure_caption(run: RunData, kind: str, reference: Reference | None) -> str:
    """What a figure of :func:`run_figure` draws, in words (from what the run has)."""
    weighted = run.log_weights is not None
    if kind == "ramachandran":
        panels = ["flow samples"] + (["flow reweighted to the target"] if weighted else [])
        if reference is not None:
            panels += ["MD reference", "difference flow reweighted - MD" if weighted else ""]
        shown = ", ".join(p for p in panels if p)
        return f"Ramachandran free-energy surfaces (kT, capped at 8): {shown}."
    if kind == "fes1d":
        curves = ["flow"] + (["flow reweighted"] if weighted else [])
        curves += ["MD"] if reference is not None else []
        return (
            "Free-energy profiles of phi and psi (kT, axis cut at "
            f"{PROFILE_TOP_KT:g} kT) with bootstrap bands (+-1 s.d.): {', '.join(curves)}."
        )
    if kind == "energy":
        curves = ["flow samples"] + (["flow reweighted"] if weighted else [])
        if reference is not None and reference.reduced_energies is not None:
            curves.append("MD")
        return (
            f"Energy histograms ({', '.join(curves)}); the range covers the bulk and the "
            "legend gives the share of flow samples beyond it."
        )
    if kind == "discrete":
        curves = ["model samples"] + (["reweighted"] if weighted else [])
        curves += ["exact distribution by enumeration"] if run.exact is not None else []
        return (
            "Distributions of the mean unit (magnetization per site) and of the reduced energy "
            f"per unit: {', '.join(curves)}."
        )
    if kind == "weights":
        return (
            "Cumulative self-normalized importance weight, heaviest samples first (log axis): "
            "on the dotted curve every sample counts equally; a jump to 1 at the left means a "
            "few samples carry the reweighted statistics."
        )
    return (
        "Training curves: one loss panel per kind of stage (own axes), reverse ESS of every "
        "stage (a rung's point is the ESS of its buffer), cumulative energy evaluations."
    )


def _profiles_figure(run: RunData, reference: Reference | None) -> tuple[Figure, FigureData]:
    """phi and psi profiles (columns) of every residue (rows): flow, reweighted, MD."""
    flow_angles = backbone_dihedrals(run.samples)
    n_pairs = flow_angles[0].shape[1]
    figure = Figure(figsize=(11.0, 3.6 * n_pairs), layout="constrained")
    axes = figure.subplots(n_pairs, 2, squeeze=False)
    weights = None if run.log_weights is None else self_normalized_weights(run.log_weights)
    curves = [("flow", flow_angles, None), ("flow reweighted", flow_angles, weights)]
    if reference is not None:
        curves.append(("MD", reference.angles, None))
    data: FigureData = {}
    for i in range(n_pairs):
        for column, name in enumerate(("phi", "psi")):
            for label, angles, w in curves:
                if label == "flow reweighted" and w is None:
                    continue
                ax, curve = plot_free_energy_profile(
                    angles[column][:, i], w, label, axes[i, column], xlabel=rf"$\{name}$"
                )
                key = f"{name}_{i}_{label.replace(' ', '_')}"
                data.update({f"{key}_{field_}": values for field_, values in curve.items()})
            axes[i, column].set_ylim(-0.5, PROFILE_TOP_KT)
            if n_pairs > 1:
                axes[i, column].set_title(f"residue {i + 1}", fontsize=11)
    return figure, data


def _png_base64(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested TOML tables as ``(dotted.key, value)`` rows."""
    rows: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) and value != 0 else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_format(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _table(rows: list[tuple[str, Any]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_format(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _title(run: RunData) -> str:
    target = run.config.get("target", {})
    if not isinstance(target, Mapping):
        return "unknown target"
    shown = ("solvent", "forcefield", "constraints")
    details = ", ".join(
        f"{key} {_format(target[key])}" for key in shown if target.get(key) not in (None, "")
    )
    return f"{_target_name(run)}" + (f" ({details})" if details else "")


#: ESS fractions below which the headline warns.
ESS_NOISY, ESS_UNUSABLE = 0.05, 0.005
#: Renamed summary.json keys (the raw names mean little to a reader).
_SUMMARY_LABELS = {
    "log_z_estimate": "log Z, importance-sampling estimate [nats]",
    "log_z_standard_error": "log Z estimate, standard error [nats]",
    "kl": "KL(q||p) [nats]",
    "ess": "reverse ESS (fraction)",
}


def _headline(run: RunData, reference: Reference | None) -> tuple[list[tuple[str, Any]], list]:
    """The few numbers that matter, and warnings in words."""
    rows: list[tuple[str, Any]] = []
    warnings: list[str] = []
    summary = run.summary or {}
    ess = None if run.log_weights is None else float(reverse_ess(run.log_weights))
    if ess is not None:
        rows.append((f"reverse ESS at {temperature_text(run)}", f"{100 * ess:.2f}%"))
        if ess < ESS_UNUSABLE:
            warnings.append(
                f"ESS {100 * ess:.2f}%: the reweighted statistics rest on a handful of samples; "
                "treat reweighted surfaces and populations as unreliable"
            )
        elif ess < ESS_NOISY:
            warnings.append(f"ESS {100 * ess:.1f}% is below 5%: reweighted surfaces are noisy")
    if run.molecular and run.samples is not None:
        phi, psi = backbone_dihedrals(run.samples)
        if phi.shape[1] == 1:
            plain = basin_populations(phi[:, 0], psi[:, 0])
            weights = None if run.log_weights is None else self_normalized_weights(run.log_weights)
            reweighted = weights is not None and basin_populations(phi[:, 0], psi[:, 0], weights)
            md = reference is not None and basin_populations(*(a[:, 0] for a in reference.angles))
            for basin, value in plain.items():
                parts = [f"flow {100 * value:.1f}%"]
                if reweighted:
                    parts.append(f"reweighted {100 * reweighted[basin]:.1f}%")
                if md:
                    parts.append(f"MD {100 * md[basin]:.1f}%")
                rows.append((f"population {basin}", ", ".join(parts)))
    for key, label in [
        ("energy_evaluations", "energy evaluations"),
        ("steps", "training steps"),
        ("wall_time_s", "training wall time [s]"),
        ("device", "device"),
    ]:
        if summary.get(key) is not None:
            rows.append((label, summary[key]))
    if summary.get("kl") is not None:
        rows.append(("KL(q||p) (exact log Z) [nats]", summary["kl"]))
    rows.extend(_distillation_rows(summary))
    if summary.get("skipped_steps"):
        warnings.append(
            f"{summary['skipped_steps']} training steps were skipped (non-finite loss or "
            "gradient); see docs/reliability.md"
        )
    if reference is None and run.molecular:
        warnings.append("no reference MD given (--reference): no MD curves or populations")
    return rows, warnings


def _distillation_rows(summary: dict) -> list[tuple[str, Any]]:
    """Summary rows of a distillation run (the student judged by its teacher) and of a
    federated run (exact KLs of the global model per domain and pooled)."""
    rows: list[tuple[str, Any]] = []
    if summary.get("ess_teacher") is not None:
        rows.append(("reverse ESS to the teacher", f"{100 * summary['ess_teacher']:.2f}%"))
        share = summary["teacher_low_density_fraction"]
        rows.append(
            ("samples below the teacher's 1st log-density percentile", f"{100 * share:.2f}%")
        )
    domains = sorted(k for k in summary if k.startswith("kl_domain_"))
    for key in domains:
        rows.append((f"KL(p_domain {key.removeprefix('kl_domain_')} || q) [nats]", summary[key]))
    if summary.get("kl_pooled") is not None:
        rows.append(("KL(p_pooled || q) [nats]", summary["kl_pooled"]))
    if summary.get("domain_experts") is not None:
        rows.append(("domain experts (last round)", summary["domain_experts"]))
    return rows


def _ramachandran_section(run: RunData, reference: Reference) -> str:
    """Per-residue Ramachandran KL(MD || flow) and TV beside the MD split-half floor."""
    result = ramachandran_metrics(
        reference.angles, backbone_dihedrals(run.samples), run.log_weights
    )
    columns = [key for key in ("tv", "tv_reweighted", "kl", "kl_reweighted") if key in result]
    floor = result["split_half"]
    rows = [
        (i + 1, *(result[key][i] for key in columns), floor["tv"][i], floor["kl"][i])
        for i in range(len(result["tv"]))
    ]
    header = (
        "residue",
        *(key.replace("_", " ").replace("tv", "TV").replace("kl", "KL") for key in columns),
        "TV floor (MD split-half)",
        "KL floor (MD split-half)",
    )
    n_md, n_flow = result["n_reference"], result["n_flow"]
    return (
        f"<h2>Ramachandran metrics</h2><p>{result['bins']} x {result['bins']} histograms on [0, "
        "2&pi;)^2; "
        f"{n_flow:,} flow samples, {n_md:,} MD frames; the floor compares the two halves of the "
        "MD frames "
        f"({n_md // 2:,} per side) and is meaningful only for decorrelated frames.</p>"
        + _table(rows, header)
    )


_STYLE = """
body { font-family: sans-serif; font-size: 15px; margin: 2em auto; max-width: 1200px; color: #222;
}
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 10px; text-align: left; font-size: 14px; }
th { background: #eee; }
figure { margin: 1em 0 2em; }
img { max-width: 100%; }
.note { color: #8a4b00; }
figcaption { font-size: 14px; color: #444; max-width: 900px; }
.warnings li { margin: 0.2em 0; }
"""


def write_report(
    run_dir: str | Path,
    output: str | Path,
    reference_path: str | Path | None = None,
    exact: ExactDistribution | None = None,
) -> Path:
    """Write one self-contained HTML page about a run: target, settings, metrics and figures.

    Figures are embedded as base64 PNG. Pieces the run lacks are skipped with a note.

    Arguments:
        run_dir: The run directory.
        output: The HTML file to write.
        reference_path: Optional reference MD dataset (see :func:`load_reference`).
        exact: The exact distribution of the run's target, when it is discrete and enumerable.

    Returns:
        The path written.

    Raises:
        BoltzgenError: When ``run_dir`` does not exist or the reference cannot be read.
    """
    run = load_run_data(run_dir)
    run.exact = exact
    reference = None
    if reference_path is not None:
        reference = load_reference(reference_path, run.run_dir / "samples" / "samples.pdb")
    elif run.molecular:
        run.notes.append(
            "No reference MD dataset (--reference): MD curves and Ramachandran KL/TV skipped."
        )
    headline, warnings = _headline(run, reference)
    parts = [
        f"<h1>boltzgen run report: {html.escape(_title(run))}</h1>",
        f"<p>Run directory: <code>{html.escape(str(run.run_dir.resolve()))}</code>; samples "
        f"at {html.escape(temperature_text(run))}.</p>",
    ]
    if headline:
        parts += ["<h2>Summary</h2>", _table(headline, ("", "value"))]
    if warnings:
        parts += [
            "<ul class='warnings'>",
            *(f"<li class='note'>{html.escape(w)}</li>" for w in warnings),
            "</ul>",
        ]
    if run.samples is not None and reference is not None:
        parts.append(_ramachandran_section(run, reference))
    parts.append("<h2>Figures</h2>")
    for kind in _kinds_for(run):
        try:
            figure, _ = run_figure(run, kind, reference)
        except BoltzgenError as error:
            parts.append(
                f"<p class='note'>{html.escape(FIGURE_KINDS[kind])}: skipped "
                f"({html.escape(str(error))}).</p>"
            )
            continue
        caption = figure_caption(run, kind, reference)
        parts.append(
            f"<figure><img alt='{kind}' src='data:image/png;base64,{_png_base64(figure)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    if run.summary is not None:
        rows = [(_SUMMARY_LABELS.get(k, k), v) for k, v in _flatten(run.summary)]
        parts += ["<h2>All final metrics (summary.json)</h2>", _table(rows, ("metric", "value"))]
    if run.config:
        parts += [
            "<h2>Settings (config.toml)</h2>",
            _table(_flatten(run.config), ("setting", "value")),
        ]
    if run.notes:
        parts += [
            "<h2>Notes</h2><ul>",
            *(f"<li class='note'>{html.escape(n)}</li>" for n in run.notes),
            "</ul>",
        ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>boltzgen report</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    return output
