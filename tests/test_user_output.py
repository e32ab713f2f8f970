"""What a user reads: report figures of non-molecular runs, training panels per stage, the
weight curve, evaluate's reasons for missing metrics, init's header, exact's option help."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from boltzgen.cli.main import main
from boltzgen.diagnostics.plots import plot_log_weights, plot_training_curves
from boltzgen.diagnostics.report import load_run_data, run_figure
from boltzgen.workflow.templates import template_with

#: The smoke template at T = 2 with a few more samples.
TOY_OVERRIDES = ["trainer.temperature=2.0", "trainer.batch_size=64", "sample.n=500"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    (root / "toy.toml").write_text(template_with("toy-smoke", TOY_OVERRIDES))
    assert main(["train", str(root / "toy.toml"), "-o", str(root / "run"), "--no-progress"]) == 0
    return root / "run"


def test_a_toy_run_gets_energy_weights_and_training_figures(toy_run: Path, capsys) -> None:
    run = load_run_data(toy_run)
    assert not run.molecular and run.temperature == 2.0 and run.log_weights.shape == (500,)
    for kind in ("energy", "weights", "training"):
        figure, _ = run_figure(run, kind)
        titles = [ax.get_title() for ax in figure.axes] + [
            figure._suptitle.get_text() if figure._suptitle else ""
        ]
        assert any("gaussian-mixture" in t for t in titles), (kind, titles)
        if kind != "training":
            assert any("T = 2 (target units)" in t for t in titles), titles
    capsys.readouterr()
    assert main(["plot", str(toy_run), "--kind", "ramachandran"]) == 2
    assert "use --kind energy, weights, training" in capsys.readouterr().err
    out = toy_run / "report.html"
    assert main(["report", str(toy_run), "-o", str(out)]) == 0
    page = out.read_text()
    assert page.count("<img") == 3 and "reverse ESS at T = 2 (target units)" in page
    assert "log Z, importance-sampling estimate" in page  # not the raw key name


def test_training_losses_of_different_stages_never_share_an_axis() -> None:
    steps = np.r_[np.arange(1, 51), 0, np.arange(1, 11), 0, np.arange(1, 11)]
    stages = ["pretrain"] * 50 + ["anneal-1-T600"] * 11 + ["anneal-2-T300"] * 11
    loss = np.r_[np.full(50, 180.0), np.nan, np.full(10, -170.0), np.nan, np.full(10, -175.0)]
    loss[0] = 1e9  # the first step's spike
    ess = np.full(steps.size, np.nan)
    ess[[50, 61]] = [0.2, 0.001]  # one buffer ESS per rung
    ess[:50] = 0.5
    figure, _ = plot_training_curves(
        {"step": steps, "stage": stages, "loss": loss, "ess": ess}, title="t"
    )
    shown = [ax for ax in figure.axes if ax.get_visible()]
    pretrain, anneal, ess_axis = shown
    assert {line.get_label() for line in anneal.get_lines()} == {"anneal-1-T600", "anneal-2-T300"}
    assert len(pretrain.get_lines()) == 1 and pretrain.get_ylim()[1] < 1e3  # spike cut
    assert ess_axis.get_yscale() == "log" and len(ess_axis.get_lines()) == 3  # rungs shown


def test_equal_weights_lie_on_the_equal_weight_curve() -> None:
    ax, data = plot_log_weights(np.zeros(1000))
    np.testing.assert_allclose(data["cumulative"], data["fraction"], rtol=1e-12)
    assert data["ess"][0] == pytest.approx(1.0)
    _, skewed = plot_log_weights(np.r_[50.0, np.zeros(999)])
    assert skewed["cumulative"][0] > 0.999


def test_evaluate_says_why_each_missing_metric_is_missing(toy_run: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["evaluate", str(toy_run), "-n", "200", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    reasons = report["not_computed"]
    assert reasons["log Z is known at T = 1 only (evaluate with --temperature 1)"] == "kl"
    assert "nll" in reasons["needs --reference samples"]
    assert "ramachandran_tv" in reasons["not a molecule"]
    assert main(["evaluate", str(toy_run), "-n", "200"]) == 0
    table = capsys.readouterr().out
    assert "ramachandran" not in table.split("not computed")[0] and "not computed" in table


def test_init_header_names_the_written_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "my.toml"
    assert main(["init", "toy-reverse-kl", "-o", str(out)]) == 0
    header = out.read_text().splitlines()[1]
    assert f"boltzgen train {out}" in header and "toy-reverse-kl.toml" not in header


def test_exact_options_are_described_with_default_and_range(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["exact", "ising", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Side of the square lattice" in text and "an integer >= 2 and <= 1024" in text
    assert "External field (default 0.0" in text


def test_every_command_line_option_has_help_without_rest_markup() -> None:
    import argparse

    from boltzgen.cli.main import build_parser

    missing, markup = [], []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        if parser.description and "``" in parser.description:
            markup.append(path)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {action.option_strings or action.dest}")
            elif "``" in action.help or ":class:" in action.help:
                markup.append(f"{path} {action.option_strings}")

    walk(build_parser(), "boltzgen")
    assert not missing and not markup, (missing, markup)


def test_a_discrete_run_gets_its_observables_against_the_exact_distribution(
    tmp_path: Path,
) -> None:
    """SK with N = 10 spins (zero field): the exact magnetization distribution is symmetric and
    sums to 1; the report draws model, reweighted and exact curves."""
    from boltzgen.workflow.runs import exact_distribution_of_run

    config = tmp_path / "rk.toml"
    overrides = ["trainer.steps=10", "sample.n=500", "trainer.progress=false"]
    config.write_text(template_with("discrete-reverse-kl-score", overrides))
    assert main(["train", str(config), "-o", str(tmp_path / "run"), "--no-progress"]) == 0
    run = load_run_data(tmp_path / "run")
    run.exact = exact_distribution_of_run(tmp_path / "run")
    assert run.states.shape == (500, 10) and run.exact.n_units == 10
    _, data = run_figure(run, "discrete")
    np.testing.assert_allclose(data["exact_m"].sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(data["exact_m"], data["exact_m"][::-1], atol=1e-12)
    assert data["model_m"].sum() == pytest.approx(1.0)
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "run"), "-o", str(out)]) == 0
    assert "exact distribution by enumeration" in out.read_text()


def _strict(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    value = json.loads(text, parse_constant=refuse)
    assert isinstance(value, dict)
    return value


def test_every_json_output_is_one_strict_object_with_snake_case_keys(
    toy_run: Path, tmp_path: Path, capsys
) -> None:
    import re

    commands = [
        ["exact", "ising", "--L", "4", "--json"],
        ["systems", "list", "--json"],
        ["evaluate", str(toy_run), "-n", "100", "--json"],
        ["sample", str(toy_run), "-n", "10", "-o", str(tmp_path / "s.pt"), "--json"],
    ]
    capsys.readouterr()
    for argv in commands:
        assert main(argv) == 0, argv
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 1, argv
        keys = _strict(lines[0]).keys()
        bad = [key for key in keys if not re.fullmatch(r"[a-z][a-z0-9]*(_[A-Za-z0-9]+)*", key)]
        assert not bad, (argv, bad)
