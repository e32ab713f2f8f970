"""Matplotlib figures of a Boltzmann generator's samples and training run.

Every function builds on explicit :class:`matplotlib.figure.Figure` objects (never ``pyplot``
state), so it is safe under any backend, in threads and in scripts without a display. Each
returns ``(figure_or_axes, data)`` where ``data`` holds the numbers behind the figure as NumPy
arrays; :func:`save_figure` writes the image and those numbers as an ``.npz`` beside it.

Angles are taken in radians and shown in degrees on [-180, 180]; free energies in kT; energies
in kT or, given a temperature, kJ/mol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from ..errors import BoltzgenError
from ..molecule.ramachandran import BASIN_LABEL_CENTRES
from ..molecule.units import BOLTZMANN_CONSTANT
from ..samplers.weights import reverse_ess, self_normalized_weights
from .free_energy import free_energy_profile_1d, free_energy_surface_2d
from .metrics import angle_pairs

__all__ = [
    "save_figure",
    "plot_ramachandran",
    "plot_ramachandran_comparison",
    "plot_free_energy_profile",
    "plot_energy_histogram",
    "plot_log_weights",
    "plot_discrete_observables",
    "plot_training_curves",
    "FigureData",
]

#: Data behind a figure: named NumPy arrays, written by :func:`save_figure` as ``.npz``.
FigureData = dict[str, np.ndarray]

_ANGLE_TICKS = np.arange(-180, 181, 90)
_DIFFERENCE_LIMIT_KT = 3.0


def save_figure(
    figure: Figure, path: str | Path, data: Mapping[str, ArrayLike], dpi: int = 150
) -> Path:
    """Write a figure (format from the suffix: .png, .svg, .pdf) and its numbers as ``.npz``.

    Arguments:
        figure: The figure to save; its pixel size is ``figure.get_size_inches() * dpi``.
        path: Image file; the numbers go to the same path with suffix ``.npz``.
        data: Named arrays behind the figure (from the plot function).
        dpi: Resolution of raster formats.

    Returns:
        The path of the ``.npz`` file.
    """
    path = Path(path)
    if path.suffix.lower() not in {".png", ".svg", ".pdf"}:
        raise BoltzgenError(
            f"cannot save a figure as '{path.name}': use a .png, .svg or .pdf file name"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    numbers = path.with_suffix(".npz")
    np.savez(numbers, **{key: np.asarray(value) for key, value in data.items()})
    return numbers


def _new_axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    return Figure(figsize=size, layout="constrained").add_subplot() if ax is None else ax


def _angle_axis(ax: Axes, axis: str, label: str) -> None:
    """Degrees from -180 to 180 with ticks every 90 degrees on the x or y axis."""
    limits, ticks, set_label = (
        (ax.set_xlim, ax.set_xticks, ax.set_xlabel)
        if axis == "x"
        else (ax.set_ylim, ax.set_yticks, ax.set_ylabel)
    )
    limits(-180, 180)
    ticks(_ANGLE_TICKS)
    set_label(f"{label} [deg]")


def _weights_or_none(log_w: ArrayLike | None, clip_fraction: float) -> np.ndarray | None:
    """Clipped, self-normalized importance weights, or ``None`` without log-weights."""
    return (
        None
        if log_w is None
        else self_normalized_weights(np.asarray(log_w, dtype=np.float64), clip_fraction)
    )


def plot_ramachandran(
    phi: ArrayLike,
    psi: ArrayLike,
    weights: ArrayLike | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    kT_cap: float = 8.0,
    basin_labels: bool = True,
    bins: int = 72,
) -> tuple[Axes, FigureData]:
    """Ramachandran plot: the free-energy surface F(phi, psi) in kT, zero at the minimum.

    Bins above ``kT_cap`` and bins without samples stay blank (white). Contour lines every
    2 kT (every 4 kT for caps above 12 kT).

    Arguments:
        phi: Backbone dihedral phi in radians, shape ``(n,)``.
        psi: Backbone dihedral psi in radians, shape ``(n,)``.
        weights: Non-negative sample weights, shape ``(n,)`` (``None``: equal weights).
        ax: Axes to draw into; ``None``: a new figure of 4.8 x 4 inches.
        title: Axes title.
        kT_cap: Highest free energy on the colour scale, in kT.
        basin_labels: Mark the C5, C7eq, alpha_R and alpha_L basins.
        bins: Bins per axis on [-180, 180) degrees.

    Returns:
        ``(ax, {"free_energy": (bins, bins) [phi_bin, psi_bin] in kT (inf: empty),
        "phi_edges_deg", "psi_edges_deg"})``.
    """
    ax = _new_axes(ax, (4.8, 4.0))
    free_energy, (phi_edges, psi_edges) = free_energy_surface_2d(phi, psi, weights, bins=bins)
    phi_deg, psi_deg = np.degrees(phi_edges), np.degrees(psi_edges)
    shown = np.ma.masked_where(~(free_energy <= kT_cap), free_energy).T
    mesh = ax.pcolormesh(
        phi_deg,
        psi_deg,
        shown,
        cmap="viridis",
        vmin=0.0,
        vmax=kT_cap,
        shading="flat",
        rasterized=True,
    )
    step = 2.0 if kT_cap <= 12 else 4.0
    centres_phi, centres_psi = (
        0.5 * (phi_deg[1:] + phi_deg[:-1]),
        0.5 * (psi_deg[1:] + psi_deg[:-1]),
    )
    ax.contour(
        centres_phi,
        centres_psi,
        shown,
        levels=np.arange(step, kT_cap, step),
        colors="white",
        linewidths=0.5,
        alpha=0.7,
    )
    ax.figure.colorbar(mesh, ax=ax, label="free energy [kT]")
    _angle_axis(ax, "x", r"$\phi$")
    _angle_axis(ax, "y", r"$\psi$")
    ax.set_aspect("equal")
    if basin_labels:
        for label, (x, y) in BASIN_LABEL_CENTRES.items():
            ax.annotate(
                label,
                (x, y),
                fontsize=10,
                ha="center",
                va="center",
                color="black",
                bbox={
                    "boxstyle": "round,pad=0.15",
                    "facecolor": "white",
                    "alpha": 0.6,
                    "linewidth": 0,
                },
            )
    if title:
        ax.set_title(title, fontsize=11)
    return ax, {"free_energy": free_energy, "phi_edges_deg": phi_deg, "psi_edges_deg": psi_deg}


def plot_ramachandran_comparison(
    flow_angles: Sequence[ArrayLike],
    reference_angles: Sequence[ArrayLike] | None = None,
    flow_log_weights: ArrayLike | None = None,
    kT_cap: float = 8.0,
    clip_fraction: float = 1e-4,
    bins: int = 72,
    title: str | None = None,
) -> tuple[Figure, FigureData]:
    """Ramachandran plots side by side: flow, flow reweighted, MD, and their difference.

    One row per (phi_i, psi_i) pair. Panels without input (no weights, no reference) are left
    out; the difference panel shows F_flow - F_MD in kT (reweighted flow when weights are given)
    on bins below ``kT_cap`` in both, clipped to +-3 kT.

    Arguments:
        flow_angles: ``(phi, psi)`` of the flow samples in radians, each ``(n_flow, k)``.
        reference_angles: ``(phi, psi)`` of MD frames in radians, each ``(n_md, k)``.
        flow_log_weights: Log importance weights of the flow samples, ``(n_flow,)``, clipped
            at ``clip_fraction`` (see :func:`~boltzgen.diagnostics.metrics.clip_log_weights`).
        kT_cap: Highest free energy on the colour scale, in kT.
        clip_fraction: Fraction of largest log-weights clipped before reweighting.
        bins: Bins per axis.
        title: Figure title (e.g. the molecule and temperature).

    Returns:
        ``(figure, data)`` with ``data[f"{panel}_{i}"]`` the free energies in kT of panel
        ``flow``, ``reweighted``, ``md`` or ``difference`` (nan: not shown) for pair i, and the
        edges in degrees.
    """
    flow_phi, flow_psi = angle_pairs(flow_angles, "flow_angles")
    weights = _weights_or_none(flow_log_weights, clip_fraction)
    panels: list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray | None]] = [
        ("flow", f"flow (n = {flow_phi.shape[0]:,})", flow_phi, flow_psi, None)
    ]
    if weights is not None:
        if weights.shape[0] != flow_phi.shape[0]:
            raise BoltzgenError(
                f"got {weights.shape[0]} log-weights for {flow_phi.shape[0]} flow samples"
            )
        ess = float(reverse_ess(np.asarray(flow_log_weights, dtype=np.float64), clip_fraction))
        panels.append(
            ("reweighted", f"flow reweighted (ESS {100 * ess:.1f}%)", flow_phi, flow_psi, weights)
        )
    if reference_angles is not None:
        md_phi, md_psi = angle_pairs(reference_angles, "reference_angles")
        if md_phi.shape[1] != flow_phi.shape[1]:
            raise BoltzgenError(
                f"reference has {md_phi.shape[1]} (phi, psi) pairs, the flow samples "
                f"{flow_phi.shape[1]}"
            )
        panels.append(("md", f"MD (n = {md_phi.shape[0]:,})", md_phi, md_psi, None))
    n_pairs, n_columns = flow_phi.shape[1], len(panels) + (reference_angles is not None)
    figure = Figure(figsize=(4.3 * n_columns, 3.7 * n_pairs), layout="constrained")
    axes = np.atleast_2d(figure.subplots(n_pairs, n_columns, squeeze=False))
    data: FigureData = {}
    for i in range(n_pairs):
        surfaces = {}
        for column, (key, panel_title, phi, psi, w) in enumerate(panels):
            _, panel = plot_ramachandran(
                phi[:, i], psi[:, i], w, axes[i, column], panel_title, kT_cap, bins=bins
            )
            surfaces[key] = panel["free_energy"]
            data[f"{key}_{i}"] = panel["free_energy"]
            data["phi_edges_deg"], data["psi_edges_deg"] = (
                panel["phi_edges_deg"],
                panel["psi_edges_deg"],
            )
        if "md" in surfaces:
            flow_key = "reweighted" if "reweighted" in surfaces else "flow"
            both_shown = (surfaces[flow_key] <= kT_cap) & (surfaces["md"] <= kT_cap)
            difference = np.where(both_shown, surfaces[flow_key], np.nan) - np.where(
                both_shown, surfaces["md"], np.nan
            )
            data[f"difference_{i}"] = difference
            _plot_difference(
                axes[i, -1],
                difference,
                data["phi_edges_deg"],
                data["psi_edges_deg"],
                f"{'reweighted ' if flow_key == 'reweighted' else ''}flow − MD",
            )
        if n_pairs > 1:
            axes[i, 0].set_ylabel(f"residue {i + 1}\n" + axes[i, 0].get_ylabel(), fontsize=11)
    if title:
        figure.suptitle(title, fontsize=12)
    return figure, data


def _plot_difference(
    ax: Axes, difference: np.ndarray, phi_deg: np.ndarray, psi_deg: np.ndarray, title: str
) -> None:
    """Panel of F_flow - F_MD in kT on a diverging scale; bins empty in either stay blank."""
    shown = np.ma.masked_invalid(
        np.clip(difference, -_DIFFERENCE_LIMIT_KT, _DIFFERENCE_LIMIT_KT)
    ).T
    mesh = ax.pcolormesh(
        phi_deg,
        psi_deg,
        shown,
        cmap="RdBu_r",
        vmin=-_DIFFERENCE_LIMIT_KT,
        vmax=_DIFFERENCE_LIMIT_KT,
        shading="flat",
        rasterized=True,
    )
    ax.figure.colorbar(mesh, ax=ax, label=r"$\Delta F$ [kT]")
    _angle_axis(ax, "x", r"$\phi$")
    _angle_axis(ax, "y", r"$\psi$")
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=11)


def plot_free_energy_profile(
    x: ArrayLike,
    weights: ArrayLike | None = None,
    label: str | None = None,
    ax: Axes | None = None,
    periodic: bool = True,
    xlabel: str = r"$\phi$",
    bins: int = 72,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> tuple[Axes, FigureData]:
    """One free-energy profile F(x) in kT with a bootstrap band (+-1 standard deviation).

    Call repeatedly with the same ``ax`` to compare curves (flow, reweighted, MD).

    Arguments:
        x: Coordinate of each sample, shape ``(n,)``: an angle in radians when ``periodic``
            (shown in degrees on [-180, 180]), otherwise in its own units.
        weights: Non-negative sample weights, shape ``(n,)`` (``None``: equal weights).
        label: Legend entry of the curve.
        ax: Axes to draw into; ``None``: a new figure of 5.5 x 3.5 inches.
        periodic: Whether x is an angle in radians.
        xlabel: Name of the coordinate (``" [deg]"`` is appended for angles).
        bins: Number of bins.
        n_bootstrap: Bootstrap replicates for the band (0: no band).
        seed: Seed of the bootstrap.

    Returns:
        ``(ax, {"centres": bin centres (degrees for angles), "free_energy": F in kT,
        "free_energy_error": its bootstrap standard deviation in kT})``.
    """
    ax = _new_axes(ax, (5.5, 3.5))
    centres, free_energy, error = free_energy_profile_1d(
        x, weights, bins, periodic, n_bootstrap=n_bootstrap, seed=seed
    )
    shown_x = np.degrees(centres) if periodic else centres
    finite = np.where(np.isfinite(free_energy), free_energy, np.nan)
    (line,) = ax.plot(shown_x, finite, label=label, linewidth=1.5)
    band = np.nan_to_num(error, nan=0.0)
    ax.fill_between(
        shown_x, finite - band, finite + band, color=line.get_color(), alpha=0.25, linewidth=0
    )
    if periodic:
        _angle_axis(ax, "x", xlabel)
    else:
        ax.set_xlabel(xlabel)
    ax.set_ylabel("free energy [kT]")
    if label:
        ax.legend(fontsize=10)
    return ax, {"centres": shown_x, "free_energy": free_energy, "free_energy_error": error}


def plot_energy_histogram(
    energies_flow: ArrayLike,
    log_w: ArrayLike | None = None,
    energies_md: ArrayLike | None = None,
    ax: Axes | None = None,
    temperature: float | None = None,
    clip_fraction: float = 1e-4,
    bins: int | None = None,
    title: str | None = None,
) -> tuple[Axes, FigureData]:
    """Histograms of the target energy of flow samples, reweighted flow samples and MD frames.

    The energy range covers the bulk of the distributions: the 0.1 to 99.5 percentiles of MD,
    or without MD the 0.5 to 99 percentiles of the flow, cut at the median + 8 interquartile
    ranges (a few clashes at 1e3-1e4 kJ/mol would otherwise squeeze the bulk into one bar).
    The share of flow samples beyond the range is written in the legend.

    Arguments:
        energies_flow: Reduced energies u (kT) of the flow samples, shape ``(n_flow,)``.
        log_w: Log importance weights of the flow samples, ``(n_flow,)`` (clipped at
            ``clip_fraction``); ``None``: no reweighted curve.
        energies_md: Reduced energies u (kT) of MD frames, shape ``(n_md,)``.
        ax: Axes to draw into; ``None``: a new figure of 5.5 x 3.5 inches.
        temperature: Temperature in K: show U = u k_B T in kJ/mol; ``None``: show u in kT.
        clip_fraction: Fraction of largest log-weights clipped before reweighting.
        bins: Number of bins; ``None``: Rice's rule 2 n^(1/3) for the flow samples, within 20-100.
        title: Axes title (e.g. the temperature).

    Returns:
        ``(ax, {"edges": bin edges (shown unit), "flow", "reweighted", "md": densities})``.
    """
    ax = _new_axes(ax, (5.5, 3.5))
    scale, unit = (
        (1.0, "kT") if temperature is None else (BOLTZMANN_CONSTANT * temperature, "kJ/mol")
    )
    flow = np.asarray(energies_flow, dtype=np.float64).ravel() * scale
    md = None if energies_md is None else np.asarray(energies_md, dtype=np.float64).ravel() * scale
    bulk = md if md is not None else flow
    bulk = bulk[np.isfinite(bulk)]
    if bulk.size == 0:
        raise BoltzgenError("no finite energy to histogram")
    if md is not None:
        low, high = np.percentile(bulk, [0.1, 99.5])
    else:
        low, q1, median, q3, high = np.percentile(bulk, [0.5, 25, 50, 75, 99])
        high = min(high, median + 8 * (q3 - q1))
    margin = 0.1 * (high - low) + 1e-12
    bins = int(np.clip(2 * np.cbrt(flow.size), 20, 100)) if bins is None else bins
    edges = np.linspace(low - margin, high + margin, bins + 1)
    outside = float(np.mean(~((flow >= edges[0]) & (flow <= edges[-1]))))
    curves = [("flow", f"flow ({100 * outside:.1f}% beyond range)", flow, None)]
    weights = _weights_or_none(log_w, clip_fraction)
    if weights is not None:
        curves.append(("reweighted", "flow reweighted", flow, weights))
    if md is not None:
        curves.append(("md", "MD", md, None))
    data: FigureData = {"edges": edges}
    for key, label, values, w in curves:
        finite = np.isfinite(values)
        counts, _ = np.histogram(values[finite], edges, weights=None if w is None else w[finite])
        # density of the whole sample: mass beyond the range counts in the normalization
        total = values.size if w is None else w.sum()
        density = counts / max(float(total), 1e-300) / np.diff(edges)
        ax.stairs(density, edges, label=label, linewidth=1.5)
        data[key] = density
    ax.set_xlabel(f"energy [{unit}]")
    ax.set_ylabel(f"density [1/{unit}]")
    if title:
        ax.set_title(title, fontsize=11)
    ax.legend(fontsize=10)
    return ax, data


def plot_discrete_observables(
    states: ArrayLike,
    reduced_energies: ArrayLike,
    log_w: ArrayLike | None = None,
    exact: tuple[ArrayLike, ArrayLike, ArrayLike] | None = None,
    clip_fraction: float = 1e-4,
    title: str | None = None,
) -> tuple[Figure, FigureData]:
    """Distributions of the mean unit (the magnetization per site of a spin model) and of the
    reduced energy per unit of discrete samples: model samples, reweighted samples, and the
    exact distribution of an enumerable target.

    Arguments:
        states: Samples ``(n, N)`` with units in {-1, +1} or {0, 1}.
        reduced_energies: u of the samples (kT), ``(n,)``.
        log_w: Log importance weights ``(n,)``; ``None``: no reweighted curve.
        exact: ``(mean unit, u per unit, probability)`` of every state, each ``(2**N,)``.
        clip_fraction: Clipping of the largest log-weights before reweighting.
        title: Figure title.

    Returns:
        ``(figure, {"m_edges", "u_edges", "{model,reweighted,exact}_{m,u}": probabilities})``.
    """
    x = np.asarray(states, dtype=np.float64)
    x = x.reshape(x.shape[0], -1)
    n_units = x.shape[1]
    observables = {"m": x.mean(1), "u": np.asarray(reduced_energies, dtype=np.float64) / n_units}
    m_edges = (np.arange(n_units + 2) - 0.5) / n_units * (2 if x.min() < 0 else 1) - (
        1 if x.min() < 0 else 0
    )
    u_all = observables["u"][np.isfinite(observables["u"])]
    if exact is not None:
        u_all = np.concatenate([u_all, np.asarray(exact[1], dtype=np.float64)])
    u_edges = np.linspace(u_all.min(), u_all.max() + 1e-9, 41)
    weights = _weights_or_none(log_w, clip_fraction)
    curves = [("model", "model samples", observables, None)]
    if weights is not None:
        curves.append(("reweighted", "reweighted", observables, weights))
    if exact is not None:
        exact_values = {
            "m": np.asarray(exact[0], dtype=np.float64),
            "u": np.asarray(exact[1], dtype=np.float64),
        }
        curves.append(("exact", "exact (enumeration)", exact_values, np.asarray(exact[2])))
    figure = Figure(figsize=(10.4, 3.6), layout="constrained")
    axes = figure.subplots(1, 2)
    data: FigureData = {"m_edges": m_edges, "u_edges": u_edges}
    labels = {"m": "mean unit (magnetization per site)", "u": "reduced energy per unit [kT]"}
    for ax, key, edges in zip(axes, ("m", "u"), (m_edges, u_edges)):
        for name, label, values, w in curves:
            finite = np.isfinite(values[key])
            probability, _ = np.histogram(
                values[key][finite], edges, weights=None if w is None else w[finite]
            )
            probability = probability / max(probability.sum(), 1e-300)
            style = {"linestyle": "--", "color": "black"} if name == "exact" else {}
            ax.stairs(probability, edges, label=label, linewidth=1.4, **style)
            data[f"{name}_{key}"] = probability
        ax.set_xlabel(labels[key])
        ax.set_ylabel("probability per bin")
    axes[0].legend(fontsize=9)
    if title:
        figure.suptitle(title, fontsize=12)
    return figure, data


def plot_log_weights(
    log_w: ArrayLike,
    ax: Axes | None = None,
    clip_fraction: float = 1e-4,
    title: str | None = None,
) -> tuple[Axes, FigureData]:
    """Cumulative importance weight of the samples, heaviest first, against the fraction of
    samples: how many samples carry the reweighted statistics. Perfect weights lie on the
    diagonal; a curve that jumps to 1 at the left means a few samples carry all the weight.

    Arguments:
        log_w: Unnormalized log-weights ``-u - log q`` of flow samples, shape ``(n,)``.
        ax: Axes to draw into; ``None``: a new figure of 5.5 x 3.8 inches.
        clip_fraction: Fraction of the largest log-weights clipped (as for the reverse ESS).
        title: Axes title (e.g. which temperature the weights reweight to).

    Returns:
        ``(ax, {"fraction": sample fractions, "cumulative": cumulative weight, "ess": [ESS]})``.
    """
    ax = _new_axes(ax, (5.5, 3.8))
    values = np.asarray(log_w, dtype=np.float64).ravel()
    finite = np.isfinite(values)
    if not finite.any():
        raise BoltzgenError("no finite log-weight to plot")
    weights = np.sort(self_normalized_weights(values[finite], clip_fraction))[::-1]
    cumulative = np.cumsum(weights)
    fraction = np.arange(1, weights.size + 1) / weights.size
    ess = float(reverse_ess(values, clip_fraction))
    ax.plot(fraction, cumulative, linewidth=1.6, label="flow samples")
    ax.plot(fraction, fraction, color="grey", linestyle=":", label="equal weights")
    ax.set_xscale("log")
    ax.set_xlim(1.0 / weights.size, 1.0)
    ax.set_ylim(0.0, 1.02)
    top = max(1, int(round(0.01 * weights.size)))
    note = (
        f"reverse ESS = {100 * ess:.2f}% of N = {values.size:,}\n"
        f"heaviest 1% carry {100 * cumulative[top - 1]:.1f}% of the weight"
    )
    if (~finite).any():
        note += f"\nnon-finite: {(~finite).sum():,}"
    ax.text(
        0.03,
        0.97,
        note,
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=10,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85},
    )
    ax.set_xlabel("fraction of samples, heaviest first")
    ax.set_ylabel("cumulative normalized weight")
    ax.set_title(title or "importance weights", fontsize=11)
    ax.legend(fontsize=9, loc="lower right")
    return ax, {"fraction": fraction, "cumulative": cumulative, "ess": np.array([ess])}


def _continuous_steps(steps: np.ndarray) -> np.ndarray:
    """Steps made monotonic: where the counter restarts (a new stage), continue from the last."""
    shifted = steps.copy()
    for start in np.flatnonzero(np.diff(steps) < 0) + 1:
        shifted[start:] += shifted[start - 1] + 1 - shifted[start]
    return shifted


#: Loss labels of the stage groups that the package's trainers write (group: stage name up to
#: its first "-"); other groups get a plain "loss".
STAGE_LOSSES = {
    "pretrain": "reverse KL loss (pretraining)",
    "anneal": "NLL of the rung buffers (annealing)",
    "": "loss",
}


def _stage_group(stage: str) -> str:
    return stage.split("-", 1)[0]


def plot_training_curves(
    metrics_table: Mapping[str, Sequence], title: str | None = None
) -> tuple[Figure, FigureData]:
    """Training curves: a loss panel per stage group with its own axes, the reverse ESS over all
    stages and the energy evaluations, against the training step.

    Stages of one group (``anneal-1-T...``, ``anneal-2-T...``: the name up to its first ``-``)
    share a loss panel, one colour per stage; different objectives (the reverse KL of
    pretraining, the NLL of the annealing rungs) never share an axis. The ESS panel draws every
    stage, with markers, so that a stage that logs one ESS (a rung's buffer) shows; its axis is
    logarithmic when an ESS is below 1%.

    Arguments:
        metrics_table: Columns of ``metrics.csv`` by name: ``step`` (required), ``loss``,
            ``ess`` (fraction), ``energy_evaluations`` (missing ones are skipped) and optionally
            ``stage``. Steps that restart per stage are laid end to end; NaN entries (not logged
            at that step) are skipped.
        title: Figure title (e.g. the target and its temperatures).

    Returns:
        ``(figure, {"step": steps as plotted, column: values})``.
    """
    if "step" not in metrics_table:
        raise BoltzgenError("the metrics table has no 'step' column")
    steps = _continuous_steps(np.asarray(metrics_table["step"], dtype=np.float64))
    columns = [key for key in ("loss", "ess", "energy_evaluations") if key in metrics_table]
    if not columns:
        raise BoltzgenError(
            "the metrics table has none of the columns loss, ess, energy_evaluations"
        )
    stages = np.asarray(metrics_table.get("stage", [""] * steps.size), dtype=str)
    order = list(dict.fromkeys(stages))
    colors = {stage: f"C{i % 10}" for i, stage in enumerate(order)}
    data: FigureData = {"step": steps}
    values = {}
    for key in columns:
        values[key] = np.asarray(metrics_table[key], dtype=np.float64) * (
            100.0 if key == "ess" else 1.0
        )
        data[key] = values[key]
    loss_groups = []
    if "loss" in values:
        finite = np.isfinite(values["loss"])
        loss_groups = list(dict.fromkeys(_stage_group(s) for s in stages[finite]))
    others = [key for key in ("ess", "energy_evaluations") if key in values]
    n_columns = max(len(loss_groups), len(others), 1)
    n_rows = int(bool(loss_groups)) + int(bool(others))
    figure = Figure(figsize=(5.2 * n_columns, 3.4 * n_rows), layout="constrained")
    grid = figure.subplots(n_rows, n_columns, squeeze=False)
    for ax in grid.ravel():
        ax.set_visible(False)
    panels = [(grid[0, i], "loss", group) for i, group in enumerate(loss_groups)]
    panels += [(grid[n_rows - 1, i], key, None) for i, key in enumerate(others)]
    for ax, key, group in panels:
        ax.set_visible(True)
        for stage in order:
            if group is not None and _stage_group(stage) != group:
                continue
            rows = (stages == stage) & np.isfinite(values[key])
            few = rows.sum() < 5  # a line through a point or two does not show
            style = {"marker": "o", "markersize": 3} if key == "ess" or few else {}
            label = stage or None
            ax.plot(steps[rows], values[key][rows], color=colors[stage], label=label, **style)
        ax.set_xlabel("training step (stages end to end)")
        if key == "loss":
            ax.set_ylabel("loss [nats]")
            ax.set_title(STAGE_LOSSES.get(group, f"loss ({group})"), fontsize=11)
            _robust_limits(
                ax, values[key][np.isin(stages, [s for s in order if _stage_group(s) == group])]
            )
        elif key == "ess":
            ess = values[key][np.isfinite(values[key])]
            ax.set_ylabel("reverse ESS [%]")
            annealed = any(_stage_group(stage) == "anneal" for stage in order)
            ax.set_title(
                "reverse ESS" + (" (a rung's point: its buffer)" if annealed else ""), fontsize=11
            )
            if ess.size and ess[ess > 0].size and ess[ess > 0].min() < 1.0:
                ax.set_yscale("log")
                ax.set_ylim(max(ess[ess > 0].min() / 2, 1e-4), 100)
            else:
                ax.set_ylim(0, 100)
        else:
            ax.set_ylabel("energy evaluations")
            ax.set_title("energy evaluations (cumulative)", fontsize=11)
        if key == "loss" and len([s for s in order if _stage_group(s) == group]) > 1:
            ax.legend(fontsize=8, ncols=2)
    if title:
        figure.suptitle(title, fontsize=12)
    return figure, data


def _robust_limits(ax: Axes, values: np.ndarray) -> None:
    """y-limits that ignore the first steps' spikes: the 1st percentile to the 99th, cut at
    the median + 5 interquartile ranges, plus a margin; the number of points above is noted."""
    finite = values[np.isfinite(values)]
    if finite.size > 5:
        low, q1, median, q3, high = np.percentile(finite, [1, 25, 50, 75, 99])
        high = min(high, median + 5 * (q3 - q1))
        margin = 0.1 * (high - low) + 1e-12
        ax.set_ylim(low - margin, high + margin)
        above = int((finite > high + margin).sum())
        if above:
            note = f"{above} point(s) above"
            ax.text(0.98, 0.97, note, transform=ax.transAxes, ha="right", va="top", fontsize=9)
