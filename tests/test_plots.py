"""Figures, the ``plot`` and ``report`` commands, on a synthetic alanine-dipeptide run
directory."""

from __future__ import annotations

import base64
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import mdtraj
import numpy as np
import pytest
from matplotlib.figure import Figure

from boltzgen.cli.main import main
from boltzgen.diagnostics.plots import (
    plot_energy_histogram,
    plot_free_energy_profile,
    plot_log_weights,
    plot_ramachandran,
    plot_ramachandran_comparison,
    plot_training_curves,
    save_figure,
)
from boltzgen.molecule.trajectories import write_trajectory

ALANINE_DIPEPTIDE = (
    Path(__file__).resolve().parents[1] / "systems" / "alanine-dipeptide" / "structure.pdb"
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 150


def _angles(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Alanine-dipeptide-like (phi, psi) in radians, shape (n, 1): C5/C7eq, alpha_R, alpha_L
    basins."""
    centres = np.radians([(-150.0, 160.0), (-80.0, 70.0), (-75.0, -40.0), (60.0, 40.0)])
    basin = rng.choice(4, n, p=[0.35, 0.35, 0.25, 0.05])
    return rng.vonmises(centres[basin, 0], 8.0)[:, None], rng.vonmises(centres[basin, 1], 6.0)[
        :, None
    ]


def _metrics_table(rng: np.random.Generator) -> dict[str, np.ndarray]:
    steps = np.r_[np.arange(0, 500, 10), np.arange(0, 300, 10)]
    return {
        "step": steps,
        "stage": np.array(["pretrain"] * 50 + ["anneal"] * 30),
        "loss": np.r_[40 * np.exp(-np.arange(50) / 8) - 30, -30 + rng.normal(0, 0.3, 30)],
        "ess": np.r_[np.linspace(0.01, 0.5, 50), np.linspace(0.5, 0.9, 30)],
        "energy_evaluations": np.cumsum(np.full(80, 256.0)),
    }


def _write_run(run_dir: Path, rng: np.random.Generator, molecule: bool) -> None:
    run_dir.mkdir(parents=True)
    target = (
        '[target]\nname = "alanine-dipeptide"\n[target.molecule]\nsystem = '
        '"alanine-dipeptide"\ntemperature = 300.0\n'
        if molecule
        else '[target]\nname = "double_well"\n'
    )
    (run_dir / "config.toml").write_text(
        target + '[trainer]\nobjective = "reverse_kl"\nsteps = 800\n'
    )
    table = _metrics_table(rng)
    columns = [*table, "wall_time_s"]
    lines = [",".join(columns)] + [
        ",".join(
            [
                str(table["step"][i]),
                table["stage"][i],
                f"{table['loss'][i]:.6g}",
                "" if i % 7 == 3 else f"{table['ess'][i]:.6g}",
                f"{table['energy_evaluations'][i]:.0f}",
                f"{0.1 * i:.2f}",
            ]
        )
        for i in range(len(table["step"]))
    ]
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    (run_dir / "summary.json").write_text(
        json.dumps({"ess": 0.87, "energy_evaluations": 20480, "wall_time_s": 8.0, "device": "cpu"})
    )
    if molecule:
        structure = mdtraj.load(str(ALANINE_DIPEPTIDE))
        n = 300
        xyz = structure.xyz + rng.normal(0.0, 0.03, (n, structure.n_atoms, 3))
        reduced_energies = rng.normal(-50.0, 4.0, n)
        reduced_energies[:3] = [1e5, np.inf, np.nan]
        log_weights = rng.normal(0.0, 1.0, n)
        log_weights[1:3] = -np.inf
        write_trajectory(
            run_dir / "samples" / "samples",
            xyz,
            structure.topology,
            log_weights=log_weights,
            reduced_energies=reduced_energies,
            temperature=300.0,
            formats=("dcd",),
        )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A molecular run, a toy run (no samples), and two reference datasets (npz angles, dcd
    trajectory)."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    _write_run(root / "molecule", rng, molecule=True)
    _write_run(root / "toy", rng, molecule=False)
    phi, psi = _angles(rng, 5000)
    np.savez(
        root / "reference.npz", phi=phi, psi=psi, reduced_energies=rng.normal(-52.0, 4.0, 5000)
    )
    structure = mdtraj.load(str(ALANINE_DIPEPTIDE))
    frames = structure.xyz + rng.normal(0.0, 0.03, (200, structure.n_atoms, 3)).astype(np.float32)
    mdtraj.Trajectory(frames, structure.topology).save_dcd(str(root / "reference.dcd"))
    return {
        "molecule": root / "molecule",
        "toy": root / "toy",
        "npz": root / "reference.npz",
        "dcd": root / "reference.dcd",
    }


def _assert_png(path: Path, size_inches: tuple[float, float], dpi: int = DPI) -> None:
    """The file is a PNG of figsize * dpi pixels that is not blank."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (round(size_inches[1] * dpi), round(size_inches[0] * dpi))
    assert np.ptp(image[..., :3]) > 0.5  # something was drawn


def _figure(drawn: object) -> Figure:
    return drawn if isinstance(drawn, Figure) else drawn.figure  # type: ignore[attr-defined]


def _plots(rng: np.random.Generator) -> dict[str, tuple[object, dict[str, np.ndarray]]]:
    flow, md = _angles(rng, 20_000), _angles(rng, 20_000)
    log_w = rng.normal(0.0, 1.0, 20_000)
    weights = np.exp(log_w - log_w.max())
    profile_ax, profile = plot_free_energy_profile(flow[0][:, 0], label="flow", n_bootstrap=20)
    plot_free_energy_profile(flow[0][:, 0], weights, "flow reweighted", profile_ax, n_bootstrap=20)
    return {
        "ramachandran": plot_ramachandran(md[0][:, 0], md[1][:, 0], title="MD"),
        "comparison": plot_ramachandran_comparison(
            (np.c_[flow[0], md[0]], np.c_[flow[1], md[1]]),
            (np.c_[md[0], flow[0]], np.c_[md[1], flow[1]]),
            log_w,
        ),
        "profile": (profile_ax, profile),
        "energy": plot_energy_histogram(
            rng.normal(-50, 4, 20_000), log_w, rng.normal(-52, 4, 5000), temperature=300.0
        ),
        "weights": plot_log_weights(log_w),
        "training": plot_training_curves(_metrics_table(rng)),
    }


def test_every_plot_function_writes_image_of_expected_size_and_its_numbers(tmp_path: Path) -> None:
    plots = _plots(np.random.default_rng(1))
    for name, (drawn, data) in plots.items():
        figure = _figure(drawn)
        numbers = save_figure(figure, tmp_path / f"{name}.png", data, dpi=60)
        _assert_png(tmp_path / f"{name}.png", tuple(figure.get_size_inches()), dpi=60)
        with np.load(numbers) as archive:
            assert set(archive.files) == set(data) and all(
                archive[key].size > 0 for key in archive.files
            )
    # Two (phi_i, psi_i) pairs -> two rows of four panels (flow, reweighted, MD, difference) +
    # colour bars.
    figure = _figure(plots["comparison"][0])
    assert len([ax for ax in figure.axes if ax.get_label() != "<colorbar>"]) == 8


def test_ramachandran_axes_colour_bar_and_free_energy_numbers() -> None:
    rng = np.random.default_rng(3)
    phi, psi = rng.vonmises(-1.3, 2.0, 50_000), rng.vonmises(1.0, 1.5, 50_000)
    ax, data = plot_ramachandran(phi, psi, kT_cap=6.0, bins=36)
    assert ax.get_xlim() == (-180.0, 180.0) and ax.get_ylim() == (-180.0, 180.0)
    assert list(ax.get_xticks()) == [-180, -90, 0, 90, 180]
    assert "deg" in ax.get_xlabel() and "deg" in ax.get_ylabel()
    colorbar = [a for a in ax.figure.axes if a is not ax][0]
    assert colorbar.get_ylabel() == "free energy [kT]"
    # The surface minimum sits in the bin of the density's mode (-1.3, 1.0) rad, within one bin.
    i, j = np.unravel_index(np.argmin(data["free_energy"]), data["free_energy"].shape)
    centres = 0.5 * (data["phi_edges_deg"][1:] + data["phi_edges_deg"][:-1])
    assert (
        abs(centres[i] - math.degrees(-1.3)) <= 10.0 + 1e-9
        and abs(centres[j] - math.degrees(1.0)) <= 10.0 + 1e-9
    )


def test_save_figure_vector_formats(tmp_path: Path) -> None:
    ax, data = plot_log_weights(np.random.default_rng(4).normal(size=1000))
    save_figure(ax.figure, tmp_path / "weights.svg", data)
    save_figure(ax.figure, tmp_path / "weights.pdf", data)
    assert b"<svg" in (tmp_path / "weights.svg").read_bytes()[:2000]
    assert (tmp_path / "weights.pdf").read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize("kind", ["ramachandran", "fes1d", "energy", "weights", "training"])
def test_plot_command_writes_each_kind(runs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    out = tmp_path / f"{kind}.png"
    assert (
        main(
            [
                "plot",
                str(runs["molecule"]),
                "--kind",
                kind,
                "--reference",
                str(runs["npz"]),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    size = {
        "ramachandran": (4.3 * 4, 3.7),
        "fes1d": (11.0, 3.6),
        "energy": (5.5, 3.5),
        "weights": (5.5, 3.8),
        "training": (2 * 5.2, 2 * 3.4),  # losses of pretrain and anneal; ESS, evaluations
    }
    _assert_png(out, size[kind])
    assert out.with_suffix(".npz").stat().st_size > 0


def test_plot_command_errors_are_one_line(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plot", str(tmp_path / "missing"), "--kind", "training"]) == 2
    assert (
        main(["plot", str(runs["toy"]), "--kind", "ramachandran", "-o", str(tmp_path / "r.png")])
        == 2
    )
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "does not exist" in errors[0] and "samples" in errors[1]
    # The default output goes into RUN_DIR/plots/.
    assert main(["plot", str(runs["toy"]), "--kind", "training"]) == 0
    _assert_png(runs["toy"] / "plots" / "training.png", (2 * 5.2, 2 * 3.4))


class _Images(HTMLParser):
    """Collects the src of every <img> and the page text."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse_report(path: Path, tmp_path: Path) -> _Images:
    parser = _Images()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    for i, source in enumerate(parser.sources):
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        png = base64.b64decode(source[len(prefix) :], validate=True)
        assert png[:8] == PNG_SIGNATURE
        (tmp_path / f"embedded{i}.png").write_bytes(png)
        assert matplotlib.image.imread(tmp_path / f"embedded{i}.png").shape[0] > 100
    return parser


def test_report_of_molecular_run_with_trajectory_reference(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    assert (
        main(["report", str(runs["molecule"]), "--reference", str(runs["dcd"]), "-o", str(out)])
        == 0
    )
    page = _parse_report(out, tmp_path)
    text = " ".join(page.text)
    assert len(page.sources) == 5  # ramachandran, fes1d, energy, weights, training
    assert "alanine-dipeptide" in text and "reverse_kl" in text
    assert "Ramachandran metrics" in text and "TV floor (MD split-half)" in text
    assert "300 flow samples, 200 MD frames" in text


def test_report_of_toy_run_skips_sample_figures_with_notes(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "toy.html"
    assert main(["report", str(runs["toy"]), "-o", str(out)]) == 0
    page = _parse_report(out, tmp_path)
    text = " ".join(page.text)
    assert len(page.sources) == 1  # training curves only
    assert "No samples" in text and "No reference MD dataset" not in text and "double_well" in text
